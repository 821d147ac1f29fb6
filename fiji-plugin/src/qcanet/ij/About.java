package qcanet.ij;

import ij.IJ;
import ij.plugin.PlugIn;

/** Plugins > QCANet > About: versions of the plugin, library, ONNX Runtime and model. */
public class About implements PlugIn {
    public static final String PLUGIN_VERSION = "0.2.0";

    @Override
    public void run(String arg) {
        StringBuilder s = new StringBuilder("QCANet plugin " + PLUGIN_VERSION + "\n");
        try {
            Native.check();
            s.append("qcanet library ").append(Native.version()).append("\n");
            s.append("ONNX Runtime: ").append(Native.runtimeInfo()).append("\n");
            long m = SegmentNuclei.model(null, null, Native.DEVICE_CPU);
            s.append("Model: ").append(Native.describeModel(m));
        } catch (Throwable t) {
            s.append("Problem: ").append(t.getMessage());
        }
        IJ.log(s.toString());
        // in batch mode or headless a modal dialog would wait for a click that never comes
        if (!ij.macro.Interpreter.isBatchMode() && !java.awt.GraphicsEnvironment.isHeadless())
            IJ.showMessage("About QCANet", s.toString());
    }
}
