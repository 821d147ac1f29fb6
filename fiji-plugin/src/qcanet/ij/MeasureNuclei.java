package qcanet.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;

/** Plugins > QCANet > Measure Nuclei: volume, centroid and intensity of each label. */
public class MeasureNuclei implements PlugIn {
    @Override
    public void run(String arg) {
        int[] ids = WindowManager.getIDList();
        if (ids == null) { Errors.report("Open a label image first."); return; }
        String[] titles = new String[ids.length + 1];
        titles[0] = "None";
        for (int i = 0; i < ids.length; i++) titles[i + 1] = WindowManager.getImage(ids[i]).getTitle();
        ImagePlus lab = WindowManager.getCurrentImage();
        GenericDialog gd = new GenericDialog("Measure Nuclei");
        gd.addChoice("Labels", titles, lab.getTitle());
        gd.addChoice("Intensity", titles, "None");
        gd.showDialog();
        if (gd.wasCanceled()) return;
        try {
            Native.check();
            ImagePlus l = WindowManager.getImage(gd.getNextChoice());
            String it = gd.getNextChoice();
            ImagePlus raw = it.equals("None") ? null : WindowManager.getImage(it);
            if (l == null) throw new IllegalArgumentException("Choose a label image.");
            if (raw != null && (raw.getWidth() != l.getWidth() || raw.getHeight() != l.getHeight() || raw.getNSlices() != l.getNSlices()))
                throw new IllegalArgumentException("The intensity image differs in size from the labels.");
            double[] vs = Stacks.voxelSizeUm(l);
            if (vs == null) vs = new double[] {1, 1, 1};
            int[][] frames = new int[l.getNFrames()][];
            for (int t = 0; t < frames.length; t++) frames[t] = Stacks.labels(l, t + 1);
            table(frames, raw, 1, l.getWidth(), l.getHeight(), l.getNSlices(), vs).show("Nuclei");
        } catch (Throwable t) {
            Errors.report(t);
        }
    }

    static ResultsTable table(int[][] frames, ImagePlus raw, int channel, int nx, int ny, int nz, double[] vs) {
        ResultsTable rt = new ResultsTable();
        for (int t = 0; t < frames.length; t++) {
            float[] inten = raw == null ? null : Stacks.volume(raw, channel, Math.min(t + 1, raw.getNFrames()));
            double[] r = Native.measure(frames[t], inten, nz, ny, nx, vs);
            for (int i = 0; i < r.length / 8; i++) {
                rt.incrementCounter();
                if (frames.length > 1) rt.addValue("Frame", t + 1);
                rt.addValue("Label", r[8 * i]);
                rt.addValue("Voxels", r[8 * i + 1]);
                rt.addValue("Volume (um^3)", r[8 * i + 2]);
                rt.addValue("X (um)", r[8 * i + 3]);
                rt.addValue("Y (um)", r[8 * i + 4]);
                rt.addValue("Z (um)", r[8 * i + 5]);
                if (raw != null) { rt.addValue("Mean", r[8 * i + 6]); rt.addValue("IntDen", r[8 * i + 7]); }
            }
        }
        return rt;
    }
}
