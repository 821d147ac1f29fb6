package qcanet.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Prefs;
import ij.gui.GenericDialog;
import ij.gui.Plot;
import ij.measure.Calibration;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;

/**
 * Plugins > QCANet > Segment Nuclei 3D: labels every nucleus of the active 8/16/32-bit
 * stack or hyperstack (frame by frame). Macro:
 * run("Segment Nuclei 3D", "voxel_z=1.75 voxel_y=0.8 voxel_x=0.8 model=[Embedded default] device=CPU measure");
 */
public class SegmentNuclei implements PlugIn {
    static final String[] MODELS = {"Embedded default", "ONNX files"};
    static final String[] DEVICES = {"CPU", "GPU (CUDA)", "Automatic"};
    private static long cachedModel;
    private static String cachedKey;

    @Override
    public void run(String arg) {
        ImagePlus imp = ij.WindowManager.getCurrentImage();
        if (imp == null) { Errors.report("No image is open: open a 3D stack of nuclei first."); return; }
        if (imp.getBitDepth() == 24) { Errors.report("RGB images are not supported: use the nuclear channel as an 8, 16 or 32-bit stack."); return; }
        double[] cal = Stacks.voxelSizeUm(imp);
        GenericDialog gd = new GenericDialog("Segment Nuclei 3D");
        gd.addMessage("Voxel size in micrometres (from the image's calibration when it has one)");
        gd.addNumericField("Voxel_Z", cal != null ? cal[0] : Prefs.get("qcanet.voxel_z", 1.75), 4);
        gd.addNumericField("Voxel_Y", cal != null ? cal[1] : Prefs.get("qcanet.voxel_y", 0.8), 4);
        gd.addNumericField("Voxel_X", cal != null ? cal[2] : Prefs.get("qcanet.voxel_x", 0.8), 4);
        gd.addChoice("Model", MODELS, Prefs.get("qcanet.model", MODELS[0]));
        gd.addFileField("NSN_model", Prefs.get("qcanet.nsn", ""));
        gd.addFileField("NDN_model", Prefs.get("qcanet.ndn", ""));
        gd.addChoice("Device", DEVICES, Prefs.get("qcanet.device", DEVICES[0]));
        gd.addNumericField("Foreground_threshold (-1 = model's)", -1, 2);
        gd.addNumericField("Centre_threshold (-1 = model's)", -1, 2);
        gd.addNumericField("Minimum_volume (um^3, -1 = model's)", -1, 1);
        gd.addCheckbox("Measure", Prefs.get("qcanet.measure", false));
        gd.showDialog();
        if (gd.wasCanceled()) return;
        double[] vs = {gd.getNextNumber(), gd.getNextNumber(), gd.getNextNumber()};
        String model = gd.getNextChoice();
        String nsn = gd.getNextString().trim(), ndn = gd.getNextString().trim();
        String device = gd.getNextChoice();
        double fg = gd.getNextNumber(), centre = gd.getNextNumber(), minVol = gd.getNextNumber();
        boolean measure = gd.getNextBoolean();
        if (!(vs[0] > 0 && vs[1] > 0 && vs[2] > 0)) { Errors.report("The voxel size must be positive."); return; }
        // a voxel size left as shown is the image's own, reported as coming from the file
        boolean fromFile = Stacks.snapToCalibration(vs, cal);
        Prefs.set("qcanet.voxel_z", vs[0]); Prefs.set("qcanet.voxel_y", vs[1]); Prefs.set("qcanet.voxel_x", vs[2]);
        Prefs.set("qcanet.model", model); Prefs.set("qcanet.nsn", nsn); Prefs.set("qcanet.ndn", ndn);
        Prefs.set("qcanet.device", device); Prefs.set("qcanet.measure", measure);
        try {
            segment(imp, vs, fromFile, model.equals(MODELS[1]) ? nsn : null, ndn.isEmpty() ? null : ndn,
                    device.equals(DEVICES[1]) ? Native.DEVICE_CUDA : device.equals(DEVICES[2]) ? Native.DEVICE_AUTO : Native.DEVICE_CPU,
                    fg, centre, minVol, measure);
        } catch (Throwable t) {
            Errors.report(t);
        } finally {
            IJ.showProgress(1.0);
        }
    }

    static synchronized long model(String nsn, String ndn, int device) {
        Native.check();
        String key = nsn + "|" + ndn + "|" + device;
        if (cachedModel != 0 && key.equals(cachedKey)) return cachedModel;
        if (nsn != null && nsn.isEmpty()) throw new IllegalArgumentException("Choose an NSN model file (or the embedded default).");
        long m = Native.loadModel(nsn, ndn, device, 0);
        if (cachedModel != 0) Native.freeModel(cachedModel);
        cachedModel = m;
        cachedKey = key;
        return m;
    }

    static String describeCurrentModel() {
        return cachedModel == 0 ? null : Native.describeModel(cachedModel);
    }

    static void segment(ImagePlus imp, double[] vs, boolean vsFromFile, String nsn, String ndn, int device, double fg,
                        double centre, double minVol, boolean measure) {
        long m = model(nsn, ndn, device);
        int nx = imp.getWidth(), ny = imp.getHeight(), nz = imp.getNSlices(), nt = imp.getNFrames();
        int c = imp.getNChannels() > 1 ? imp.getChannel() : 1;
        // what will run (every frame has the same grid): an invalid value fails here, before any work
        IJ.log("QCANet plan: " + Native.planJson(m, nz, ny, nx, vs, vsFromFile, fg, centre, minVol));
        int[][] labels = new int[nt][];
        int[] counts = new int[nt];
        IJ.resetEscape();
        for (int t = 1; t <= nt; t++) {
            final int frame = t;
            IJ.showStatus("QCANet: frame " + t + "/" + nt);
            float[] v = Stacks.volume(imp, c, t);
            labels[t - 1] = new int[v.length];
            counts[t - 1] = Native.segment(m, v, nz, ny, nx, vs, vsFromFile, fg, centre, minVol, labels[t - 1], fraction -> {
                IJ.showProgress(((frame - 1) + fraction) / nt);
                return !IJ.escapePressed();
            });
        }
        Calibration cal = imp.getCalibration().copy();
        cal.pixelDepth = vs[0]; cal.pixelHeight = vs[1]; cal.pixelWidth = vs[2];
        cal.setUnit("micron");
        String base = imp.getShortTitle();
        ImagePlus out = Stacks.labelImage(base + "-labels", labels, nx, ny, nz, cal);
        out.show();
        IJ.showStatus("QCANet: " + (nt == 1 ? counts[0] + " nuclei" : "done"));
        if (nt > 1) {
            ResultsTable rt = new ResultsTable();
            double[] x = new double[nt], y = new double[nt];
            for (int t = 0; t < nt; t++) {
                double[] rows = Native.measure(labels[t], null, nz, ny, nx, vs);
                double sum = 0;
                for (int i = 0; i < rows.length / 8; i++) sum += rows[8 * i + 2];
                rt.incrementCounter();
                rt.addValue("Frame", t + 1);
                rt.addValue("Nuclei", counts[t]);
                rt.addValue("Mean volume (um^3)", counts[t] == 0 ? 0 : sum / counts[t]);
                x[t] = t + 1; y[t] = counts[t];
            }
            rt.show("Nuclei per frame");
            Plot p = new Plot("Nuclei over time", "frame", "nuclei");
            p.add("connected circle", x, y);
            p.show();
            out.show();
        }
        if (measure) MeasureNuclei.table(labels, imp, c, nx, ny, nz, vs).show("Nuclei");
    }
}
