package qcanet.ij;

import ij.IJ;
import ij.macro.Interpreter;

/** Reports a failure: always to the Log window; as a dialog only when a person is looking. */
final class Errors {
    private Errors() {}

    static void report(Throwable t) {
        report(t.getMessage() == null ? t.toString() : t.getMessage());
    }

    static void report(String msg) {
        IJ.log("QCANet: " + msg);
        // in batch mode or headless a modal dialog would wait for a click that never comes
        if (!Interpreter.isBatchMode() && !java.awt.GraphicsEnvironment.isHeadless()) IJ.error("QCANet", msg);
    }
}
