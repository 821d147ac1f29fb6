package qcanet.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Prefs;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;

import java.io.File;

/**
 * Plugins > QCANet > Segment File (block by block): segments a stack on disk that may be far
 * larger than memory (TIFF, BigTIFF, OME-TIFF, OME-Zarr; every frame of a time series) into
 * labels on disk, block by block, through the same library code as `qcanet segment`. The
 * labels go to a new TIFF (BigTIFF when large; a new OME-Zarr for an OME-Zarr input), or into
 * the OME-Zarr input's labels/ folder. The input is never written over. Macro:
 * run("Segment File (block by block)", "input=[/data/big.tif] output=[/data/big_labels.tif] use_file_calibration
 *     channel=1 blocks=Automatic model=[Embedded default] device=CPU measure");
 */
public class SegmentFile implements PlugIn {
    static final String[] BLOCKS = {"Automatic", "Whole volume", "Core size"};

    @Override
    public void run(String arg) {
        GenericDialog gd = new GenericDialog("Segment File (block by block)");
        gd.addFileField("Input", Prefs.get("qcanet.file_input", ""));
        gd.addFileField("Output", "");
        gd.addCheckbox("Labels_into_input (OME-Zarr input only)", false);
        gd.addStringField("Label_name", "qcanet");
        gd.addCheckbox("Use_file_calibration", true);
        gd.addNumericField("Voxel_Z", Prefs.get("qcanet.voxel_z", 1.75), 4);
        gd.addNumericField("Voxel_Y", Prefs.get("qcanet.voxel_y", 0.8), 4);
        gd.addNumericField("Voxel_X", Prefs.get("qcanet.voxel_x", 0.8), 4);
        gd.addNumericField("Channel", 1, 0);
        gd.addChoice("Blocks", BLOCKS, BLOCKS[0]);
        gd.addNumericField("Core_Z", 0, 0);
        gd.addNumericField("Core_Y", 0, 0);
        gd.addNumericField("Core_X", 0, 0);
        gd.addChoice("Model", SegmentNuclei.MODELS, Prefs.get("qcanet.model", SegmentNuclei.MODELS[0]));
        gd.addFileField("NSN_model", Prefs.get("qcanet.nsn", ""));
        gd.addFileField("NDN_model", Prefs.get("qcanet.ndn", ""));
        gd.addChoice("Device", SegmentNuclei.DEVICES, Prefs.get("qcanet.device", SegmentNuclei.DEVICES[0]));
        gd.addNumericField("Foreground_threshold (-1 = model's)", -1, 2);
        gd.addNumericField("Centre_threshold (-1 = model's)", -1, 2);
        gd.addNumericField("Minimum_volume (um^3, -1 = model's)", -1, 1);
        gd.addCheckbox("Measure", false);
        gd.addCheckbox("Open_labels when done", false);
        gd.showDialog();
        if (gd.wasCanceled()) return;
        String input = gd.getNextString().trim(), output = gd.getNextString().trim();
        boolean into = gd.getNextBoolean();
        String name = gd.getNextString().trim();
        boolean fileCal = gd.getNextBoolean();
        double[] vs = {gd.getNextNumber(), gd.getNextNumber(), gd.getNextNumber()};
        int channel = (int) gd.getNextNumber();
        String blocks = gd.getNextChoice();
        int[] core = {(int) gd.getNextNumber(), (int) gd.getNextNumber(), (int) gd.getNextNumber()};
        String model = gd.getNextChoice();
        String nsn = gd.getNextString().trim(), ndn = gd.getNextString().trim();
        String device = gd.getNextChoice();
        double fg = gd.getNextNumber(), centre = gd.getNextNumber(), minVol = gd.getNextNumber();
        boolean measure = gd.getNextBoolean(), open = gd.getNextBoolean();
        if (input.isEmpty()) { Errors.report("Choose the input file (a TIFF or an OME-Zarr folder)."); return; }
        if (into == !output.isEmpty()) { Errors.report("Give either an output file or Labels_into_input (not both)."); return; }
        if (into && name.isEmpty()) { Errors.report("Give a label name for Labels_into_input."); return; }
        if (channel < 1) { Errors.report("Channels are numbered from 1."); return; }
        if (!fileCal && !(vs[0] > 0 && vs[1] > 0 && vs[2] > 0)) { Errors.report("The voxel size must be positive."); return; }
        boolean byCore = blocks.equals(BLOCKS[2]);
        if (byCore && !(core[0] > 0 && core[1] > 0 && core[2] > 0)) { Errors.report("Give the block core size (z, y, x voxels)."); return; }
        Prefs.set("qcanet.file_input", input);
        if (!fileCal) { Prefs.set("qcanet.voxel_z", vs[0]); Prefs.set("qcanet.voxel_y", vs[1]); Prefs.set("qcanet.voxel_x", vs[2]); }
        try {
            long m = SegmentNuclei.model(model.equals(SegmentNuclei.MODELS[1]) ? nsn : null, ndn.isEmpty() ? null : ndn,
                                         device.equals(SegmentNuclei.DEVICES[1]) ? Native.DEVICE_CUDA
                                         : device.equals(SegmentNuclei.DEVICES[2]) ? Native.DEVICE_AUTO : Native.DEVICE_CPU);
            IJ.resetEscape();
            IJ.showStatus("QCANet: " + new File(input).getName() + " block by block");
            double[] r = Native.segmentFile(m, input, into ? null : output, into ? name : null, channel - 1,
                                            blocks.equals(BLOCKS[1]), measure, fileCal ? null : vs, fg, centre, minVol,
                                            byCore ? core : null, fraction -> {
                                                IJ.showProgress(fraction);
                                                return !IJ.escapePressed();
                                            });
            int frames = (int) r[0];
            String where = into ? new File(new File(input, "labels"), name).getPath() : output;
            long total = 0;
            for (int t = 5; t < r.length; t++) total += (long) r[t];
            IJ.log("QCANet: " + input + " -> " + where + ": " + (frames == 1 ? total + " nuclei" : total + " nuclei in " + frames + " frames")
                   + " (" + (int) r[1] + " block(s) per frame, networks " + IJ.d2s(r[2], 1) + " s, post-processing "
                   + IJ.d2s(r[3], 1) + " s, " + IJ.d2s(r[4], 1) + " s in all)");
            if (frames > 1) {
                ResultsTable rt = new ResultsTable();
                for (int t = 5; t < r.length; t++) {
                    rt.incrementCounter();
                    rt.addValue("Frame", t - 4);
                    rt.addValue("Nuclei", r[t]);
                }
                rt.show("Nuclei per frame");
            }
            if (measure) IJ.log("QCANet: measurements in the .csv of the same name beside " + (into ? "the input" : "the labels"));
            if (open && !into && !output.toLowerCase().endsWith(".zarr")) {
                ImagePlus labels = IJ.openImage(output);
                if (labels != null) labels.show();
            }
            IJ.showStatus("QCANet: " + total + " nuclei");
        } catch (Throwable t) {
            Errors.report(t);
        } finally {
            IJ.showProgress(1.0);
        }
    }

}
