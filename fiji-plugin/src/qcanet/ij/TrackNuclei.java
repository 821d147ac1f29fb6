package qcanet.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.gui.Plot;
import ij.measure.Calibration;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;

/**
 * Plugins > QCANet > Track Nuclei: follows the nuclei of a label hyperstack (one 3D label
 * volume per frame, e.g. from Segment Nuclei 3D) through the frames, with divisions. Shows
 * "TITLE-tracks" (every nucleus relabelled with its track id), a "Tracks" table (one row per
 * nucleus per frame), a "Criteria" table (one row per frame), a "Division rounds" table when
 * nuclei divide, and plots of the nucleus count and mean volume per frame.
 * Frames are numbered from 1 in every table and plot, as ImageJ's frame slider counts them
 * (the library and the CTC files of `qcanet track` count from 0). Macro:
 * run("Track Nuclei", "labels=[embryo-labels] intensity=None voxel_z=1.75 voxel_y=0.8 voxel_x=0.8 max_displacement=8 max_gap=1 division_distance=10 frame_interval=0");
 */
public class TrackNuclei implements PlugIn {
    @Override
    public void run(String arg) {
        int[] ids = WindowManager.getIDList();
        if (ids == null) { Errors.report("Open a label hyperstack (one label volume per frame) first."); return; }
        String[] titles = new String[ids.length + 1];
        titles[0] = "None";
        for (int i = 0; i < ids.length; i++) titles[i + 1] = WindowManager.getImage(ids[i]).getTitle();
        ImagePlus lab = WindowManager.getCurrentImage();
        if (lab == null) lab = WindowManager.getImage(ids[0]);
        // the voxel size and interval shown are the chosen label image's, also when a macro chooses it
        String opts = Macro.getOptions();
        if (opts != null) {
            ImagePlus chosen = WindowManager.getImage(Macro.getValue(opts, "labels", lab.getTitle()));
            if (chosen != null) lab = chosen;
        }
        double[] d;
        try {
            Native.check();
            d = Native.trackDefaults();
        } catch (Throwable t) {
            Errors.report(t);
            return;
        }
        double[] cal = Stacks.voxelSizeUm(lab);
        Calibration c0 = lab.getCalibration();
        GenericDialog gd = new GenericDialog("Track Nuclei");
        gd.addChoice("Labels", titles, lab.getTitle());
        gd.addChoice("Intensity", titles, "None");
        // no calibration in micrometres: 0, which the library refuses, rather than a guess
        gd.addMessage(cal != null ? "Voxel size in micrometres (from the image's calibration)"
                                  : "Voxel size in micrometres (the image has no calibration: enter it)");
        gd.addNumericField("Voxel_Z", cal != null ? cal[0] : 0, 4);
        gd.addNumericField("Voxel_Y", cal != null ? cal[1] : 0, 4);
        gd.addNumericField("Voxel_X", cal != null ? cal[2] : 0, 4);
        gd.addNumericField("Max_displacement (um per frame)", d[Native.TRACK_MAX_DISPLACEMENT], 2);
        gd.addNumericField("Max_gap (frames a nucleus may be missing)", d[Native.TRACK_MAX_GAP], 0);
        gd.addNumericField("Division_distance (um, 0 = no divisions)", d[Native.TRACK_DIVISION_DISTANCE], 2);
        gd.addNumericField("Frame_interval (" + c0.getTimeUnit() + ", 0 = unknown)", c0.frameInterval, 4);
        gd.showDialog();
        if (gd.wasCanceled()) return;
        try {
            ImagePlus l = WindowManager.getImage(gd.getNextChoice());
            String it = gd.getNextChoice();
            ImagePlus raw = it.equals("None") ? null : WindowManager.getImage(it);
            double[] vs = {gd.getNextNumber(), gd.getNextNumber(), gd.getNextNumber()};
            double[] params = new double[d.length];
            java.util.Arrays.fill(params, Double.NaN);
            params[Native.TRACK_MAX_DISPLACEMENT] = gd.getNextNumber();
            params[Native.TRACK_MAX_GAP] = gd.getNextNumber();
            params[Native.TRACK_DIVISION_DISTANCE] = gd.getNextNumber();
            double interval = gd.getNextNumber();
            if (l == null) throw new IllegalArgumentException("Choose a label image.");
            // an unreadable entry reads as NaN, which track() would take as "the library's default"
            if (gd.invalidNumber()) throw new IllegalArgumentException("A field does not hold a number.");
            Stacks.snapToCalibration(vs, Stacks.voxelSizeUm(l));
            track(l, raw, vs, params, interval);
        } catch (Throwable t) {
            Errors.report(t);
        }
    }

    static void track(ImagePlus lab, ImagePlus raw, double[] vs, double[] params, double interval) {
        int nx = lab.getWidth(), ny = lab.getHeight(), nz = lab.getNSlices(), nt = lab.getNFrames();
        if (lab.getBitDepth() == 24 || lab.getNChannels() > 1) throw new IllegalArgumentException(lab.getTitle() + " is not a label image: one channel of 8, 16 or 32-bit labels.");
        if (nt < 2) throw new IllegalArgumentException(lab.getTitle() + " has one frame: nothing to follow (Image > Properties... sets the number of frames).");
        if (raw != null && (raw.getWidth() != nx || raw.getHeight() != ny || raw.getNSlices() != nz || raw.getNFrames() != nt))
            throw new IllegalArgumentException("The intensity image differs from the labels in size or frames.");
        int c = raw != null && raw.getNChannels() > 1 ? raw.getChannel() : 1;
        int[][] frames = new int[nt][];
        float[][] inten = raw == null ? null : new float[nt][];
        for (int t = 0; t < nt; t++) {
            frames[t] = Stacks.labels(lab, t + 1);
            if (raw != null) inten[t] = Stacks.volume(raw, c, t + 1);
        }
        IJ.showStatus("QCANet: tracking " + nt + " frames");
        double[][] r = Native.track(frames, inten, nz, ny, nx, vs, params, interval);
        int[] w = Native.TRACK_ROW;
        int tracks = r[0].length / w[0], divisions = r[1].length / w[1];
        IJ.log("QCANet tracking: " + tracks + " tracks, " + divisions + " divisions in " + nt + " frames");

        ResultsTable tr = new ResultsTable();
        for (int i = 0; i < r[2].length / w[2]; i++) {
            double[] p = java.util.Arrays.copyOfRange(r[2], w[2] * i, w[2] * (i + 1));
            tr.incrementCounter();
            tr.addValue("Track", p[0]);
            tr.addValue("Frame", p[2] + 1);
            tr.addValue("Label", p[1]);
            tr.addValue("X (um)", p[4]); tr.addValue("Y (um)", p[5]); tr.addValue("Z (um)", p[6]);
            tr.addValue("Volume (um^3)", p[7]);
            tr.addValue("Surface (um^2)", p[8]);
            if (raw != null) tr.addValue("Mean", p[9]);
            tr.addValue("Parent", p[3]);
        }
        tr.show("Tracks");

        Calibration cal = lab.getCalibration().copy();
        cal.pixelDepth = vs[0]; cal.pixelHeight = vs[1]; cal.pixelWidth = vs[2];
        cal.setUnit("micron");
        if (interval > 0) cal.frameInterval = interval;
        String unit = cal.getTimeUnit();
        ResultsTable cr = new ResultsTable();
        double[] x = new double[nt], count = new double[nt], mean = new double[nt], sd = new double[nt];
        for (int t = 0; t < r[3].length / w[3]; t++) {
            double[] k = java.util.Arrays.copyOfRange(r[3], w[3] * t, w[3] * (t + 1));
            cr.incrementCounter();
            cr.addValue("Frame", k[0] + 1);
            cr.addValue("Time (" + unit + ")", k[3]); // NaN: no interval known
            cr.addValue("Nuclei", k[1]);
            cr.addValue("Volume sum (um^3)", k[4]); cr.addValue("Volume mean (um^3)", k[5]); cr.addValue("Volume SD (um^3)", k[6]);
            cr.addValue("Surface sum (um^2)", k[7]); cr.addValue("Surface mean (um^2)", k[8]); cr.addValue("Surface SD (um^2)", k[9]);
            cr.addValue("Sphericity", k[10]);
            if (raw != null) cr.addValue("Mean intensity", k[11]);
            cr.addValue("NN distance (um)", k[12]); // mean distance to the nearest other nucleus
            cr.addValue("Divisions", k[2]);
            if (t < nt) { x[t] = k[0] + 1; count[t] = k[1]; mean[t] = k[5]; sd[t] = k[6]; }
        }
        cr.show("Criteria");

        if (divisions > 0) {
            ResultsTable rr = new ResultsTable();
            for (int i = 0; i < r[4].length / w[4]; i++) {
                double[] k = java.util.Arrays.copyOfRange(r[4], w[4] * i, w[4] * (i + 1));
                rr.incrementCounter();
                rr.addValue("Round", k[0]);
                rr.addValue("Divisions", k[1]);
                rr.addValue("First frame", k[2] + 1); rr.addValue("Last frame", k[3] + 1);
                rr.addValue("Spread (frames)", k[4]); // last - first: how synchronous the round is
                rr.addValue("Mean frame", k[5] + 1); rr.addValue("SD (frames)", k[6]);
            }
            rr.show("Division rounds");
        }

        String base = lab.getShortTitle();
        Plot pc = new Plot(base + ": nuclei per frame", "frame", "nuclei");
        pc.add("connected circle", x, count);
        pc.setLimits(0.5, nt + 0.5, 0, 1.1 * top(count, null));
        pc.show();
        Plot pv = new Plot(base + ": nuclear volume per frame", "frame", "mean volume (um^3) \u00b1 SD");
        pv.add("connected circle", x, mean);
        pv.addErrorBars(sd);
        // from 0 and up to the longest error bar (the automatic range leaves the bars out)
        pv.setLimits(0.5, nt + 0.5, 0, 1.1 * top(mean, sd));
        pv.show();
        // last, so that the track stack is the current image (plots are images in batch mode)
        Stacks.labelImage(base + "-tracks", frames, nx, ny, nz, cal).show();
        IJ.showStatus("QCANet: " + tracks + " tracks, " + divisions + " divisions");
    }

    /** Largest y (+ error), NaN (a frame without nuclei) left out; 1 when there is none. */
    private static double top(double[] y, double[] err) {
        double m = 0;
        for (int i = 0; i < y.length; i++) {
            double v = y[i] + (err == null || Double.isNaN(err[i]) ? 0 : err[i]);
            if (v > m) m = v;
        }
        return m > 0 ? m : 1;
    }
}
