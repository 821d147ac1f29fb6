package qcanet.ij;

import ij.ImagePlus;
import ij.ImageStack;
import ij.measure.Calibration;
import ij.process.FloatProcessor;
import ij.process.ImageProcessor;
import ij.process.LUT;
import ij.process.ShortProcessor;

/** Conversions between ImageJ stacks and the C API's [z][y][x] arrays. */
final class Stacks {
    private Stacks() {}

    /** One volume (channel c, frame t; 1-based) as floats in [z][y][x] order. */
    static float[] volume(ImagePlus imp, int c, int t) {
        int nx = imp.getWidth(), ny = imp.getHeight(), nz = imp.getNSlices();
        float[] v = new float[nx * ny * nz];
        ImageStack st = imp.getStack();
        for (int z = 0; z < nz; z++) {
            ImageProcessor ip = st.getProcessor(imp.getStackIndex(c, z + 1, t));
            float[] px = (float[]) ip.convertToFloatProcessor().getPixels();
            System.arraycopy(px, 0, v, z * nx * ny, nx * ny);
        }
        return v;
    }

    /** Label values (integers) of one volume. */
    static int[] labels(ImagePlus imp, int t) {
        float[] f = volume(imp, 1, t);
        int[] l = new int[f.length];
        for (int i = 0; i < f.length; i++) {
            if (f[i] < 0 || f[i] != Math.rint(f[i])) throw new IllegalArgumentException(imp.getTitle() + " is not a label image (value " + f[i] + ")");
            l[i] = (int) f[i];
        }
        return l;
    }

    /** Voxel size (z, y, x) in micrometres from the calibration, or null when it is in pixels/unknown units. */
    static double[] voxelSizeUm(ImagePlus imp) {
        Calibration cal = imp.getCalibration();
        String u = cal.getUnit() == null ? "" : cal.getUnit().trim().toLowerCase();
        double f;
        if (u.equals("micron") || u.equals("microns") || u.equals("um") || u.equals("\u00b5m") || u.equals("\u03bcm") || u.equals("micrometer")) f = 1;
        else if (u.equals("nm") || u.equals("nanometer")) f = 1e-3;
        else if (u.equals("mm") || u.equals("millimeter")) f = 1e3;
        else return null;
        return new double[] {cal.pixelDepth * f, cal.pixelHeight * f, cal.pixelWidth * f};
    }

    /**
     * Voxel size from a dialog that showed the calibration cal (or null) to 4 decimals: a value
     * left as shown is the image's own, taken exactly. Returns whether all three are.
     */
    static boolean snapToCalibration(double[] vs, double[] cal) {
        boolean fromFile = cal != null;
        for (int k = 0; k < 3 && cal != null; k++) {
            if (Math.abs(vs[k] - cal[k]) < 0.5e-4) vs[k] = cal[k]; else fromFile = false;
        }
        return fromFile;
    }

    /** A label image: 16-bit when every label fits, else 32-bit; glasbey-like LUT; calibration copied. */
    static ImagePlus labelImage(String title, int[][] frames, int nx, int ny, int nz, Calibration cal) {
        int max = 0;
        for (int[] f : frames) for (int v : f) max = Math.max(max, v);
        ImageStack st = new ImageStack(nx, ny);
        for (int[] f : frames) {
            for (int z = 0; z < nz; z++) {
                if (max <= 65535) {
                    short[] s = new short[nx * ny];
                    for (int i = 0; i < nx * ny; i++) s[i] = (short) f[z * nx * ny + i];
                    st.addSlice(new ShortProcessor(nx, ny, s, null));
                } else {
                    float[] s = new float[nx * ny];
                    for (int i = 0; i < nx * ny; i++) s[i] = f[z * nx * ny + i];
                    st.addSlice(new FloatProcessor(nx, ny, s));
                }
            }
        }
        ImagePlus out = new ImagePlus(title, st);
        out.setDimensions(1, nz, frames.length);
        if (frames.length > 1) out.setOpenAsHyperStack(true);
        if (cal != null) out.setCalibration(cal.copy());
        out.getProcessor().setLut(glasbey());
        out.setLut(glasbey());
        out.setDisplayRange(0, 255);
        return out;
    }

    /** Black background, then well separated colours (golden-angle hues). */
    static LUT glasbey() {
        byte[] r = new byte[256], g = new byte[256], b = new byte[256];
        for (int i = 1; i < 256; i++) {
            double h = (i * 0.618033988749895) % 1.0;
            double s = 0.55 + 0.45 * ((i * 7) % 3) / 2.0, v = 0.75 + 0.25 * ((i * 5) % 2);
            int hi = (int) (h * 6);
            double fr = h * 6 - hi, p = v * (1 - s), q = v * (1 - fr * s), t = v * (1 - (1 - fr) * s);
            double[] rgb;
            switch (hi % 6) {
                case 0: rgb = new double[] {v, t, p}; break;
                case 1: rgb = new double[] {q, v, p}; break;
                case 2: rgb = new double[] {p, v, t}; break;
                case 3: rgb = new double[] {p, q, v}; break;
                case 4: rgb = new double[] {t, p, v}; break;
                default: rgb = new double[] {v, p, q};
            }
            r[i] = (byte) (255 * rgb[0]); g[i] = (byte) (255 * rgb[1]); b[i] = (byte) (255 * rgb[2]);
        }
        return new LUT(r, g, b);
    }
}
