package qcanet.ij;

import java.io.File;
import java.net.URISyntaxException;

/**
 * The qcanet C library through a thin JNI layer (libqcanet_jni.so, which calls only
 * the functions of include/qcanet.h). The native libraries are found beside the
 * plugin's jar, or in Fiji's lib/linux64 folder: no environment variable needed.
 */
public final class Native {
    private static Throwable loadError;

    static {
        try {
            File jar = new File(Native.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            File dir = jar.isDirectory() ? jar : jar.getParentFile();
            File[] places = {
                new File(dir, "libqcanet_jni.so"),
                new File(dir, "lib/linux64/libqcanet_jni.so"),
                new File(dir.getParentFile(), "lib/linux64/libqcanet_jni.so"),
                dir.getParentFile() == null ? null : new File(dir.getParentFile().getParentFile(), "lib/linux64/libqcanet_jni.so"),
            };
            File found = null;
            for (File f : places) {
                if (f != null && f.isFile()) { found = f; break; }
            }
            if (found == null) throw new UnsatisfiedLinkError("libqcanet_jni.so not found beside " + jar + " or in Fiji's lib/linux64");
            System.load(found.getAbsolutePath());
        } catch (Throwable t) {
            loadError = t;
        }
    }

    private Native() {}

    /** Throws a readable error when the native libraries could not be loaded. */
    public static void check() {
        if (loadError != null) throw new RuntimeException("QCANet native library could not be loaded: " + loadError.getMessage(), loadError);
    }

    /** Progress from the library: return false to cancel. */
    public interface Progress {
        boolean report(float fraction);
    }

    public static final int DEVICE_AUTO = 0, DEVICE_CPU = 1, DEVICE_CUDA = 2;

    public static native String version();
    public static native String runtimeInfo();
    /** nsn == null: the embedded default model. Returns a handle for the other calls. */
    public static native long loadModel(String nsn, String ndn, int device, int threads);
    public static native void freeModel(long model);
    public static native String describeModel(long model);
    /**
     * Voxels in [z][y][x] order; voxel size in micrometres (voxelSizeFromFile: it is the image's
     * own calibration, which the plan reports); -1 thresholds/minimum volume mean "the model's". The doubles reach the library unchanged. Returns the nucleus count.
     */
    public static native int segment(long model, float[] voxels, int nz, int ny, int nx, double[] voxelSizeZYX,
                                     boolean voxelSizeFromFile, double fgThreshold, double centreThreshold, double minVolume, int[] labelsOut, Progress progress);
    /**
     * The plan segment() would run for a volume of nz x ny x nx under these values, as one JSON
     * object (grids, voxel size and its source, resampling, tiles, post-processing with every
     * default filled in). Throws, as segment() would, on an invalid value.
     */
    public static native String planJson(long model, int nz, int ny, int nx, double[] voxelSizeZYX,
                                         boolean voxelSizeFromFile, double fgThreshold, double centreThreshold,
                                         double minVolume);
    /** {iou, seg, mucov, seg_ctc, f1, n_gt, n_pred, n_matched, ap50, ap70, ap90} (AP at IoU 0.5, 0.7, 0.9) */
    public static native double[] evaluate(int[] pred, int[] gt, int nz, int ny, int nx);
    /** Rows of 8: label, voxels, volume (um^3), centroid x, y, z (um), mean and total intensity. */
    public static native double[] measure(int[] labels, float[] intensity, int nz, int ny, int nx, double[] voxelSizeZYX);
}
