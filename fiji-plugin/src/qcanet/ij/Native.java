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
    /**
     * Segments a stack file (TIFF, BigTIFF, OME-TIFF, OME-Zarr) into labels on disk block by
     * block, in memory bounded by the block (qca_segment_file): into the new file output (TIFF;
     * .zarr for an OME-Zarr input), or, with output null, into the OME-Zarr input's
     * labels/labelsName. voxelSizeZYX null: the file's own; core null: blocks chosen by
     * qcanet; whole: one block. Returns {frames, blocks, network s, post-processing s, wall s,
     * nuclei of frame 1, 2, ...}.
     */
    public static native double[] segmentFile(long model, String input, String output, String labelsName, int channel,
                                              boolean whole, boolean measure, double[] voxelSizeZYX, double fgThreshold,
                                              double centreThreshold, double minVolume, int[] core, Progress progress);
    /** {iou, seg, mucov, seg_ctc, f1, n_gt, n_pred, n_matched, ap50, ap70, ap90} (AP at IoU 0.5, 0.7, 0.9) */
    public static native double[] evaluate(int[] pred, int[] gt, int nz, int ny, int nx);
    /** Rows of 8: label, voxels, volume (um^3), centroid x, y, z (um), mean and total intensity. */
    public static native double[] measure(int[] labels, float[] intensity, int nz, int ny, int nx, double[] voxelSizeZYX);
    /** The library's linking defaults, in the order track() takes them (see TRACK_*). */
    public static native double[] trackDefaults();
    /** Indices of track()'s params: NaN at an index means the library's default. */
    public static final int TRACK_MAX_DISPLACEMENT = 0, TRACK_MAX_GAP = 1, TRACK_DIVISION_DISTANCE = 2,
                            TRACK_DIVISION_VOLUME_MIN = 3, TRACK_DIVISION_VOLUME_MAX = 4, TRACK_OVERLAP_WEIGHT = 5;
    /**
     * Links a time lapse of label volumes ([z][y][x], one per frame; intensities null, or one
     * volume per frame for the mean intensities), then rewrites every frame IN PLACE as track
     * ids (on failure the arrays may be partly rewritten). params: 6 values (TRACK_*, micrometres
     * and frames); interval: time between frames, 0 = unknown. Frames are 0-based throughout.
     * Returns 5 tables of rows, flattened: tracks (4: id, parent, start, end), divisions (4: frame,
     * parent, daughter 1, daughter 2), points (10: track, label, frame, parent, centroid x, y, z
     * (um), volume (um^3), surface (um^2), mean intensity), criteria (13: frame, nuclei, divisions,
     * time, volume sum, mean, SD, surface sum, mean, SD, sphericity, mean intensity, mean nearest
     * neighbour distance (um); NaN = undefined) and division rounds (7: round, divisions, first
     * frame, last frame, spread, mean frame, SD).
     */
    public static native double[][] track(int[][] frames, float[][] intensities, int nz, int ny, int nx,
                                          double[] voxelSizeZYX, double[] params, double interval);
    /** Values per row of track()'s 5 tables. */
    static final int[] TRACK_ROW = {4, 4, 10, 13, 7};
}
