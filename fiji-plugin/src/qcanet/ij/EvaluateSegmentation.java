package qcanet.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;

/**
 * Plugins > QCANet > Evaluate Segmentation: IoU, SEG, MUCov, CTC SEG, F1 and AP at IoU 0.5, 0.7
 * and 0.9 (TP / (TP + FP + FN), as StarDist's matching) of two label images.
 */
public class EvaluateSegmentation implements PlugIn {
    @Override
    public void run(String arg) {
        int[] ids = WindowManager.getIDList();
        if (ids == null || ids.length < 2) { Errors.report("Open a prediction and a ground-truth label image."); return; }
        String[] titles = new String[ids.length];
        for (int i = 0; i < ids.length; i++) titles[i] = WindowManager.getImage(ids[i]).getTitle();
        GenericDialog gd = new GenericDialog("Evaluate Segmentation");
        gd.addChoice("Prediction", titles, titles[0]);
        gd.addChoice("Ground_truth", titles, titles[titles.length - 1]);
        gd.showDialog();
        if (gd.wasCanceled()) return;
        try {
            Native.check();
            ImagePlus p = WindowManager.getImage(gd.getNextChoice()), g = WindowManager.getImage(gd.getNextChoice());
            if (p.getWidth() != g.getWidth() || p.getHeight() != g.getHeight() || p.getNSlices() != g.getNSlices() || p.getNFrames() != g.getNFrames())
                throw new IllegalArgumentException("The two images differ in size.");
            ResultsTable rt = new ResultsTable();
            for (int t = 1; t <= p.getNFrames(); t++) {
                double[] m = Native.evaluate(Stacks.labels(p, t), Stacks.labels(g, t), p.getNSlices(), p.getHeight(), p.getWidth());
                rt.incrementCounter();
                rt.addValue("Prediction", p.getTitle());
                rt.addValue("Ground truth", g.getTitle());
                rt.addValue("Frame", t);
                rt.addValue("IoU", m[0]); rt.addValue("SEG", m[1]); rt.addValue("MUCov", m[2]);
                rt.addValue("CTC_SEG", m[3]); rt.addValue("F1", m[4]);
                rt.addValue("n_gt", m[5]); rt.addValue("n_pred", m[6]);
                rt.addValue("AP50", m[8]); rt.addValue("AP70", m[9]); rt.addValue("AP90", m[10]);
            }
            rt.show("Segmentation scores");
        } catch (Throwable t) {
            Errors.report(t);
        }
    }
}
