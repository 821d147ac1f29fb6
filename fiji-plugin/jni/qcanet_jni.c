/*
 * JNI glue between the ImageJ plugin (qcanet.ij.Native) and the qcanet C API.
 * It only consumes include/qcanet.h: every call goes through qca_* functions.
 * Failures become a Java RuntimeException carrying qca_last_error(); nothing
 * here can crash the JVM on bad input (lengths are checked against dims first).
 * ABI 2: voxel sizes, thresholds and volumes go from Java double to C double unchanged.
 */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qcanet.h"

static void throw_msg(JNIEnv *env, const char *what, QcaStatus s) {
    char buf[2048];
    const char *name = qca_status_str(s);
    snprintf(buf, sizeof buf, "%s: %s [%s]", what, qca_last_error(), name ? name : "?");
    jclass cls = (*env)->FindClass(env, "java/lang/RuntimeException");
    if (cls) (*env)->ThrowNew(env, cls, buf);
}

static void throw_plain(JNIEnv *env, const char *msg) {
    jclass cls = (*env)->FindClass(env, "java/lang/IllegalArgumentException");
    if (cls) (*env)->ThrowNew(env, cls, msg);
}

static int dims_ok(JNIEnv *env, jint nz, jint ny, jint nx, jsize have, size_t dims[3]) {
    if (nz <= 0 || ny <= 0 || nx <= 0) { throw_plain(env, "dimensions must be positive"); return 0; }
    dims[0] = (size_t)nz; dims[1] = (size_t)ny; dims[2] = (size_t)nx;
    if ((size_t)have != dims[0] * dims[1] * dims[2]) { throw_plain(env, "array length does not match dimensions"); return 0; }
    return 1;
}

/* Fills p from the plugin's values: voxel size z, y, x (3 doubles), thresholds and minimum
 * volume (negative = the model's), all passed on as the doubles Java holds. */
static int params_from_java(JNIEnv *env, jdoubleArray voxelSize, jboolean voxelSizeFromFile, jdouble fg,
                            jdouble centre, jdouble minVolume, QcaSegmentParams *p) {
    if (!voxelSize) { throw_plain(env, "null array"); return 0; }
    if ((*env)->GetArrayLength(env, voxelSize) != 3) { throw_plain(env, "voxel size needs 3 values"); return 0; }
    qca_segment_params_default(p, sizeof *p);
    jdouble vs[3];
    (*env)->GetDoubleArrayRegion(env, voxelSize, 0, 3, vs);
    p->voxel_size[0] = vs[0]; p->voxel_size[1] = vs[1]; p->voxel_size[2] = vs[2];
    p->voxel_size_source = voxelSizeFromFile ? QCA_VOXEL_SIZE_FILE : QCA_VOXEL_SIZE_CALLER;
    p->fg_threshold = fg;
    p->centre_threshold = centre;
    p->min_volume_um3 = minVolume;
    return 1;
}

JNIEXPORT jstring JNICALL Java_qcanet_ij_Native_version(JNIEnv *env, jclass cls) {
    (void)cls;
    return (*env)->NewStringUTF(env, qca_version());
}

JNIEXPORT jstring JNICALL Java_qcanet_ij_Native_runtimeInfo(JNIEnv *env, jclass cls) {
    (void)cls;
    QcaStatus s = qca_runtime_init(NULL);
    if (s != QCA_OK) { throw_msg(env, "ONNX Runtime", s); return NULL; }
    const char *info = qca_runtime_info();
    return (*env)->NewStringUTF(env, info ? info : "");
}

JNIEXPORT jlong JNICALL Java_qcanet_ij_Native_loadModel(JNIEnv *env, jclass cls, jstring nsn, jstring ndn,
                                                         jint device, jint threads) {
    (void)cls;
    if (qca_abi_version() != QCA_ABI_VERSION) {
        char msg[160];
        snprintf(msg, sizeof msg, "libqcanet.so has C API version %u; this plugin was built for version %d: "
                 "install the plugin and libqcanet.so from the same release", qca_abi_version(), QCA_ABI_VERSION);
        throw_plain(env, msg);
        return 0;
    }
    QcaModelOptions o;
    qca_model_options_default(&o, sizeof o);
    o.device = device;
    o.num_threads = threads;
    QcaModel *m = NULL;
    QcaStatus s;
    if (nsn == NULL) {
        s = qca_model_load_default(&o, &m);
    } else {
        const char *a = (*env)->GetStringUTFChars(env, nsn, NULL);
        const char *b = ndn ? (*env)->GetStringUTFChars(env, ndn, NULL) : NULL;
        s = qca_model_load(a, b, &o, &m);
        (*env)->ReleaseStringUTFChars(env, nsn, a);
        if (b) (*env)->ReleaseStringUTFChars(env, ndn, b);
    }
    if (s != QCA_OK) { throw_msg(env, "loading the model", s); return 0; }
    return (jlong)(intptr_t)m;
}

JNIEXPORT void JNICALL Java_qcanet_ij_Native_freeModel(JNIEnv *env, jclass cls, jlong h) {
    (void)env; (void)cls;
    qca_model_free((QcaModel *)(intptr_t)h);
}

JNIEXPORT jstring JNICALL Java_qcanet_ij_Native_describeModel(JNIEnv *env, jclass cls, jlong h) {
    (void)cls;
    size_t need = 0;
    QcaStatus s = qca_model_describe((const QcaModel *)(intptr_t)h, NULL, 0, &need);
    if (s != QCA_OK) { throw_msg(env, "describing the model", s); return NULL; }
    char *buf = (char *)malloc(need);
    if (!buf) { throw_plain(env, "out of memory"); return NULL; }
    qca_model_describe((const QcaModel *)(intptr_t)h, buf, need, NULL);
    jstring r = (*env)->NewStringUTF(env, buf);
    free(buf);
    return r;
}

/* progress: calls listener.report(float) -> boolean (false = cancel) on the calling thread */
struct progress_ctx { JNIEnv *env; jobject listener; jmethodID report; };

static int32_t progress_cb(float fraction, void *user) {
    struct progress_ctx *c = (struct progress_ctx *)user;
    if (!c->listener) return 0;
    jboolean go_on = (*c->env)->CallBooleanMethod(c->env, c->listener, c->report, (jfloat)fraction);
    if ((*c->env)->ExceptionCheck(c->env)) return 1;
    return go_on ? 0 : 1;
}

JNIEXPORT jint JNICALL Java_qcanet_ij_Native_segment(JNIEnv *env, jclass cls, jlong h, jfloatArray voxels,
                                                      jint nz, jint ny, jint nx, jdoubleArray voxelSize,
                                                      jboolean voxelSizeFromFile,
                                                      jdouble fgThreshold, jdouble centreThreshold, jdouble minVolume,
                                                      jintArray labelsOut, jobject listener) {
    (void)cls;
    size_t dims[3];
    if (!voxels || !labelsOut || !voxelSize) { throw_plain(env, "null array"); return -1; }
    if (!dims_ok(env, nz, ny, nx, (*env)->GetArrayLength(env, voxels), dims)) return -1;
    if ((*env)->GetArrayLength(env, labelsOut) != (*env)->GetArrayLength(env, voxels)) { throw_plain(env, "label array has the wrong length"); return -1; }
    QcaSegmentParams p;
    if (!params_from_java(env, voxelSize, voxelSizeFromFile, fgThreshold, centreThreshold, minVolume, &p)) return -1;
    struct progress_ctx ctx = { env, listener, NULL };
    if (listener) {
        jclass lc = (*env)->GetObjectClass(env, listener);
        ctx.report = (*env)->GetMethodID(env, lc, "report", "(F)Z");
        if (!ctx.report) return -1; /* NoSuchMethodError pending */
        p.progress = progress_cb;
        p.user_data = &ctx;
    }
    size_t n = dims[0] * dims[1] * dims[2];
    float *in = (float *)malloc(n * sizeof *in);
    uint32_t *out = (uint32_t *)malloc(n * sizeof *out);
    if (!in || !out) { free(in); free(out); throw_plain(env, "out of memory"); return -1; }
    (*env)->GetFloatArrayRegion(env, voxels, 0, (jsize)n, in);
    uint32_t count = 0;
    QcaStatus s = qca_segment_f32((const QcaModel *)(intptr_t)h, in, dims, &p, out, &count);
    free(in);
    if (s != QCA_OK) {
        free(out);
        if (!(*env)->ExceptionCheck(env)) throw_msg(env, "segmentation", s);
        return -1;
    }
    (*env)->SetIntArrayRegion(env, labelsOut, 0, (jsize)n, (const jint *)out);
    free(out);
    return (jint)count;
}

/* The plan qca_segment_* would run for a volume of nz x ny x nx under these values, as JSON. */
JNIEXPORT jstring JNICALL Java_qcanet_ij_Native_planJson(JNIEnv *env, jclass cls, jlong h, jint nz, jint ny, jint nx,
                                                         jdoubleArray voxelSize, jboolean voxelSizeFromFile,
                                                         jdouble fgThreshold, jdouble centreThreshold,
                                                         jdouble minVolume) {
    (void)cls;
    if (nz <= 0 || ny <= 0 || nx <= 0) { throw_plain(env, "dimensions must be positive"); return NULL; }
    size_t dims[3] = { (size_t)nz, (size_t)ny, (size_t)nx };
    QcaSegmentParams p;
    if (!params_from_java(env, voxelSize, voxelSizeFromFile, fgThreshold, centreThreshold, minVolume, &p)) return NULL;
    const QcaModel *m = (const QcaModel *)(intptr_t)h;
    size_t need = 0;
    QcaStatus s = qca_plan_json(m, dims, &p, NULL, 0, &need);
    if (s != QCA_OK) { throw_msg(env, "planning the segmentation", s); return NULL; }
    char *buf = (char *)malloc(need);
    if (!buf) { throw_plain(env, "out of memory"); return NULL; }
    s = qca_plan_json(m, dims, &p, buf, need, NULL);
    if (s != QCA_OK) { free(buf); throw_msg(env, "planning the segmentation", s); return NULL; }
    jstring r = (*env)->NewStringUTF(env, buf);
    free(buf);
    return r;
}

JNIEXPORT jdoubleArray JNICALL Java_qcanet_ij_Native_evaluate(JNIEnv *env, jclass cls, jintArray pred, jintArray gt,
                                                              jint nz, jint ny, jint nx) {
    (void)cls;
    size_t dims[3];
    if (!pred || !gt) { throw_plain(env, "null array"); return NULL; }
    if (!dims_ok(env, nz, ny, nx, (*env)->GetArrayLength(env, pred), dims)) return NULL;
    if ((*env)->GetArrayLength(env, gt) != (*env)->GetArrayLength(env, pred)) { throw_plain(env, "images differ in size"); return NULL; }
    jint *a = (*env)->GetIntArrayElements(env, pred, NULL);
    jint *b = (*env)->GetIntArrayElements(env, gt, NULL);
    QcaMetrics m;
    QcaStatus s = qca_evaluate((const uint32_t *)a, (const uint32_t *)b, dims, &m);
    (*env)->ReleaseIntArrayElements(env, pred, a, JNI_ABORT);
    (*env)->ReleaseIntArrayElements(env, gt, b, JNI_ABORT);
    if (s != QCA_OK) { throw_msg(env, "evaluation", s); return NULL; }
    /* ap[0], [2], [4]: IoU thresholds 0.5, 0.7, 0.9 */
    jdouble r[11] = { m.iou, m.seg, m.mucov, m.seg_ctc, m.f1, (jdouble)m.n_gt, (jdouble)m.n_pred, (jdouble)m.n_matched,
                      m.ap[0], m.ap[2], m.ap[4] };
    jdoubleArray out = (*env)->NewDoubleArray(env, 11);
    if (out) (*env)->SetDoubleArrayRegion(env, out, 0, 11, r);
    return out;
}

/* rows of 8: label, voxels, volume_um3, centroid x, y, z (um), mean intensity, total intensity */
JNIEXPORT jdoubleArray JNICALL Java_qcanet_ij_Native_measure(JNIEnv *env, jclass cls, jintArray labels,
                                                             jfloatArray intensity, jint nz, jint ny, jint nx,
                                                             jdoubleArray voxelSize) {
    (void)cls;
    size_t dims[3];
    if (!labels || !voxelSize) { throw_plain(env, "null array"); return NULL; }
    if (!dims_ok(env, nz, ny, nx, (*env)->GetArrayLength(env, labels), dims)) return NULL;
    if (intensity && (*env)->GetArrayLength(env, intensity) != (*env)->GetArrayLength(env, labels)) { throw_plain(env, "intensity image differs in size"); return NULL; }
    if ((*env)->GetArrayLength(env, voxelSize) != 3) { throw_plain(env, "voxel size needs 3 values"); return NULL; }
    jdouble vs[3];
    (*env)->GetDoubleArrayRegion(env, voxelSize, 0, 3, vs);
    jint *l = (*env)->GetIntArrayElements(env, labels, NULL);
    jfloat *im = intensity ? (*env)->GetFloatArrayElements(env, intensity, NULL) : NULL;
    QcaMeasurements *ms = NULL;
    QcaStatus s = qca_measure((const uint32_t *)l, im, dims, vs, &ms);
    (*env)->ReleaseIntArrayElements(env, labels, l, JNI_ABORT);
    if (im) (*env)->ReleaseFloatArrayElements(env, intensity, im, JNI_ABORT);
    if (s != QCA_OK) { throw_msg(env, "measurement", s); return NULL; }
    size_t k = qca_measurements_count(ms);
    jdouble *rows = (jdouble *)malloc((k ? k : 1) * 8 * sizeof(jdouble));
    if (!rows) { qca_measurements_free(ms); throw_plain(env, "out of memory"); return NULL; }
    for (size_t i = 0; i < k; i++) {
        QcaNucleus nu;
        qca_measurements_get(ms, i, &nu);
        jdouble *r = rows + 8 * i;
        r[0] = nu.label; r[1] = (jdouble)nu.voxels; r[2] = nu.volume_um3;
        r[3] = nu.centroid_um[2]; r[4] = nu.centroid_um[1]; r[5] = nu.centroid_um[0];
        r[6] = nu.mean_intensity; r[7] = nu.total_intensity;
    }
    qca_measurements_free(ms);
    jdoubleArray out = (*env)->NewDoubleArray(env, (jsize)(8 * k));
    if (out) (*env)->SetDoubleArrayRegion(env, out, 0, (jsize)(8 * k), rows);
    free(rows);
    return out;
}

/* Linking parameters in the order Native.TRACK_* names them. */
#define TRACK_PARAMS 6

JNIEXPORT jdoubleArray JNICALL Java_qcanet_ij_Native_trackDefaults(JNIEnv *env, jclass cls) {
    (void)cls;
    QcaTrackParams p;
    QcaStatus s = qca_track_params_default(&p, sizeof p);
    if (s != QCA_OK) { throw_msg(env, "tracking defaults", s); return NULL; }
    jdouble r[TRACK_PARAMS] = { p.max_displacement_um, (jdouble)p.max_gap, p.division_max_distance_um,
                                p.division_volume_min, p.division_volume_max, p.overlap_weight };
    jdoubleArray out = (*env)->NewDoubleArray(env, TRACK_PARAMS);
    if (out) (*env)->SetDoubleArrayRegion(env, out, 0, TRACK_PARAMS, r);
    return out;
}

/* The library's defaults, overridden where Java gives a number (NaN = keep the default). The
 * library judges every value but max_gap, which must first fit its uint32_t. */
static int track_params_from_java(JNIEnv *env, jdoubleArray params, QcaTrackParams *p) {
    if ((*env)->GetArrayLength(env, params) != TRACK_PARAMS) { throw_plain(env, "tracking needs 6 parameters"); return 0; }
    jdouble v[TRACK_PARAMS];
    (*env)->GetDoubleArrayRegion(env, params, 0, TRACK_PARAMS, v);
    QcaStatus s = qca_track_params_default(p, sizeof *p);
    if (s != QCA_OK) { throw_msg(env, "tracking defaults", s); return 0; }
    if (v[0] == v[0]) p->max_displacement_um = v[0];
    if (v[1] == v[1]) {
        if (!(v[1] >= 0 && v[1] <= 4294967295.0 && v[1] == (jdouble)(uint32_t)v[1])) {
            char msg[96];
            snprintf(msg, sizeof msg, "the maximum gap must be a whole number of frames, got %g", v[1]);
            throw_plain(env, msg);
            return 0;
        }
        p->max_gap = (uint32_t)v[1];
    }
    if (v[2] == v[2]) p->division_max_distance_um = v[2];
    if (v[3] == v[3]) p->division_volume_min = v[3];
    if (v[4] == v[4]) p->division_volume_max = v[4];
    if (v[5] == v[5]) p->overlap_weight = v[5];
    return 1;
}

/* Adds frame i (labels and, when given, intensities), every array checked against dims first. */
static int track_add(JNIEnv *env, QcaTracker *t, jobjectArray frames, jobjectArray intensities, jsize i,
                     jint nz, jint ny, jint nx) {
    size_t dims[3];
    jintArray lab = (jintArray)(*env)->GetObjectArrayElement(env, frames, i);
    jfloatArray inten = intensities ? (jfloatArray)(*env)->GetObjectArrayElement(env, intensities, i) : NULL;
    int ok = 0;
    if (!lab) throw_plain(env, "null frame");
    else if (intensities && !inten) throw_plain(env, "null intensity volume");
    else if (!dims_ok(env, nz, ny, nx, (*env)->GetArrayLength(env, lab), dims)) {}
    else if (inten && (*env)->GetArrayLength(env, inten) != (*env)->GetArrayLength(env, lab)) throw_plain(env, "intensity image differs in size");
    else {
        jint *l = (*env)->GetIntArrayElements(env, lab, NULL);
        /* no JNI call while an OutOfMemoryError from the first is pending */
        jfloat *im = (inten && l) ? (*env)->GetFloatArrayElements(env, inten, NULL) : NULL;
        if (l && (!inten || im)) {
            QcaStatus s = qca_track_add_frame(t, (const uint32_t *)l, im, dims);
            if (s != QCA_OK) {
                char what[64];
                snprintf(what, sizeof what, "tracking (frame %d)", (int)i);
                throw_msg(env, what, s);
            } else {
                ok = 1;
            }
        } /* else OutOfMemoryError pending */
        if (l) (*env)->ReleaseIntArrayElements(env, lab, l, JNI_ABORT);
        if (im) (*env)->ReleaseFloatArrayElements(env, inten, im, JNI_ABORT);
    }
    if (lab) (*env)->DeleteLocalRef(env, lab);
    if (inten) (*env)->DeleteLocalRef(env, inten);
    return ok;
}

static const int32_t track_tables[5] = { QCA_TABLE_TRACKS, QCA_TABLE_DIVISIONS, QCA_TABLE_POINTS,
                                         QCA_TABLE_CRITERIA, QCA_TABLE_ROUNDS };
static const size_t track_widths[5] = { 4, 4, 10, 13, 7 }; /* Native.TRACK_ROW */

/* Row i of table k into o (track_widths[k] values; centroids turned to x, y, z). */
static QcaStatus track_row(const QcaTracking *r, int k, size_t i, jdouble *o) {
    QcaStatus s;
    int32_t tb = track_tables[k];
    if (tb == QCA_TABLE_TRACKS) {
        QcaTrack x;
        if ((s = qca_tracking_get(r, tb, i, &x, sizeof x)) != QCA_OK) return s;
        o[0] = x.id; o[1] = x.parent; o[2] = (jdouble)x.start; o[3] = (jdouble)x.end;
    } else if (tb == QCA_TABLE_DIVISIONS) {
        QcaDivision x;
        if ((s = qca_tracking_get(r, tb, i, &x, sizeof x)) != QCA_OK) return s;
        o[0] = (jdouble)x.frame; o[1] = x.parent; o[2] = x.daughters[0]; o[3] = x.daughters[1];
    } else if (tb == QCA_TABLE_POINTS) {
        QcaTrackPoint x;
        if ((s = qca_tracking_get(r, tb, i, &x, sizeof x)) != QCA_OK) return s;
        o[0] = x.track; o[1] = x.label; o[2] = (jdouble)x.frame; o[3] = x.parent;
        o[4] = x.centroid_um[2]; o[5] = x.centroid_um[1]; o[6] = x.centroid_um[0];
        o[7] = x.volume_um3; o[8] = x.surface_um2; o[9] = x.mean_intensity;
    } else if (tb == QCA_TABLE_CRITERIA) {
        QcaFrameCriteria x;
        if ((s = qca_tracking_get(r, tb, i, &x, sizeof x)) != QCA_OK) return s;
        o[0] = (jdouble)x.frame; o[1] = (jdouble)x.nuclei; o[2] = (jdouble)x.divisions; o[3] = x.time;
        o[4] = x.volume_um3_sum; o[5] = x.volume_um3_mean; o[6] = x.volume_um3_sd;
        o[7] = x.surface_um2_sum; o[8] = x.surface_um2_mean; o[9] = x.surface_um2_sd;
        o[10] = x.sphericity_mean; o[11] = x.mean_intensity; o[12] = x.nearest_neighbour_um_mean;
    } else {
        QcaDivisionRound x;
        if ((s = qca_tracking_get(r, tb, i, &x, sizeof x)) != QCA_OK) return s;
        o[0] = (jdouble)x.round; o[1] = (jdouble)x.divisions; o[2] = (jdouble)x.first_frame;
        o[3] = (jdouble)x.last_frame; o[4] = (jdouble)x.spread_frames; o[5] = x.mean_frame; o[6] = x.sd_frames;
    }
    return QCA_OK;
}

/* The 5 tables as a double[5][] of flattened rows; NULL with an exception pending. */
static jobjectArray track_tables_to_java(JNIEnv *env, const QcaTracking *r) {
    jclass dcls = (*env)->FindClass(env, "[D");
    if (!dcls) return NULL;
    jobjectArray out = (*env)->NewObjectArray(env, 5, dcls, NULL);
    if (!out) return NULL;
    for (int k = 0; k < 5; k++) {
        size_t n = qca_tracking_count(r, track_tables[k]), w = track_widths[k];
        if (n > (size_t)INT32_MAX / w) { throw_plain(env, "too many rows"); return NULL; }
        jdouble *rows = (jdouble *)malloc((n ? n : 1) * w * sizeof *rows);
        if (!rows) { throw_plain(env, "out of memory"); return NULL; }
        QcaStatus s = QCA_OK;
        for (size_t i = 0; i < n && s == QCA_OK; i++) s = track_row(r, k, i, rows + w * i);
        if (s != QCA_OK) { free(rows); throw_msg(env, "reading the tracking", s); return NULL; }
        jdoubleArray a = (*env)->NewDoubleArray(env, (jsize)(n * w));
        if (a) (*env)->SetDoubleArrayRegion(env, a, 0, (jsize)(n * w), rows);
        free(rows);
        if (!a) return NULL;
        (*env)->SetObjectArrayElement(env, out, k, a);
        (*env)->DeleteLocalRef(env, a);
    }
    return out;
}

/* Reads the tables, then relabels every frame in place (the tables first: an error while
 * reading them leaves the frames untouched). */
static jobjectArray track_results(JNIEnv *env, const QcaTracking *r, jobjectArray frames, jint nz, jint ny, jint nx) {
    jobjectArray out = track_tables_to_java(env, r);
    if (!out) return NULL;
    size_t dims[3] = { (size_t)nz, (size_t)ny, (size_t)nx };
    jsize nt = (*env)->GetArrayLength(env, frames);
    for (jsize i = 0; i < nt; i++) {
        jintArray lab = (jintArray)(*env)->GetObjectArrayElement(env, frames, i);
        jint *l = lab ? (*env)->GetIntArrayElements(env, lab, NULL) : NULL;
        QcaStatus s = l ? qca_tracking_relabel(r, (size_t)i, (uint32_t *)l, dims) : QCA_ERR_NULL_POINTER;
        if (l) (*env)->ReleaseIntArrayElements(env, lab, l, s == QCA_OK ? 0 : JNI_ABORT);
        if (lab) (*env)->DeleteLocalRef(env, lab);
        if (s != QCA_OK) {
            if (!(*env)->ExceptionCheck(env)) throw_msg(env, "relabelling", s);
            return NULL;
        }
    }
    return out;
}

JNIEXPORT jobjectArray JNICALL Java_qcanet_ij_Native_track(JNIEnv *env, jclass cls, jobjectArray frames,
                                                           jobjectArray intensities, jint nz, jint ny, jint nx,
                                                           jdoubleArray voxelSize, jdoubleArray params, jdouble interval) {
    (void)cls;
    if (!frames || !voxelSize || !params) { throw_plain(env, "null array"); return NULL; }
    jsize nt = (*env)->GetArrayLength(env, frames);
    if (nt == 0) { throw_plain(env, "no frames to track"); return NULL; }
    if (intensities && (*env)->GetArrayLength(env, intensities) != nt) { throw_plain(env, "one intensity volume per frame"); return NULL; }
    if ((*env)->GetArrayLength(env, voxelSize) != 3) { throw_plain(env, "voxel size needs 3 values"); return NULL; }
    QcaTrackParams p;
    if (!track_params_from_java(env, params, &p)) return NULL;
    jdouble vs[3];
    (*env)->GetDoubleArrayRegion(env, voxelSize, 0, 3, vs);
    QcaTracker *t = NULL;
    QcaStatus s = qca_track_new(vs, &t);
    if (s != QCA_OK) { throw_msg(env, "tracking", s); return NULL; }
    jobjectArray out = NULL;
    jsize i = 0;
    while (i < nt && track_add(env, t, frames, intensities, i, nz, ny, nx)) i++;
    if (i == nt) {
        QcaTracking *r = NULL;
        s = qca_track_link(t, &p, interval, &r);
        if (s != QCA_OK) throw_msg(env, "tracking", s);
        else out = track_results(env, r, frames, nz, ny, nx);
        qca_tracking_free(r);
    }
    qca_track_free(t);
    return out;
}

/* A file segmented into a file block by block (qca_segment_file): output NULL with
 * labelsName for labels into an OME-Zarr input; voxelSize NULL for the file's own; core
 * NULL (or zeros) for blocks chosen by qcanet. Returns {frames, blocks, network_s, post_s,
 * wall_s, nuclei of frame 1, 2, ...} (frames beyond 65,536 not listed). */
JNIEXPORT jdoubleArray JNICALL Java_qcanet_ij_Native_segmentFile(JNIEnv *env, jclass cls, jlong h, jstring input,
                                                                  jstring output, jstring labelsName, jint channel,
                                                                  jboolean whole, jboolean measure,
                                                                  jdoubleArray voxelSize, jdouble fgThreshold,
                                                                  jdouble centreThreshold, jdouble minVolume,
                                                                  jintArray core, jobject listener) {
    (void)cls;
    if (!input || (!output && !labelsName)) { throw_plain(env, "null file name"); return NULL; }
    if (channel < 0) { throw_plain(env, "channel must be >= 0"); return NULL; }
    QcaSegmentParams p;
    qca_segment_params_default(&p, sizeof p);
    if (voxelSize && !params_from_java(env, voxelSize, JNI_FALSE, fgThreshold, centreThreshold, minVolume, &p)) return NULL;
    if (!voxelSize) { p.fg_threshold = fgThreshold; p.centre_threshold = centreThreshold; p.min_volume_um3 = minVolume; }
    QcaBlockOptions o;
    qca_block_options_default(&o, sizeof o);
    if (core) {
        if ((*env)->GetArrayLength(env, core) != 3) { throw_plain(env, "block core needs 3 values"); return NULL; }
        jint c[3];
        (*env)->GetIntArrayRegion(env, core, 0, 3, c);
        for (int i = 0; i < 3; i++) {
            if (c[i] < 0) { throw_plain(env, "block core must be >= 0"); return NULL; }
            o.core[i] = (size_t)c[i];
        }
    }
    struct progress_ctx ctx = { env, listener, NULL };
    if (listener) {
        jclass lc = (*env)->GetObjectClass(env, listener);
        ctx.report = (*env)->GetMethodID(env, lc, "report", "(F)Z");
        if (!ctx.report) return NULL;
        p.progress = progress_cb;
        p.user_data = &ctx;
    }
    const char *in = (*env)->GetStringUTFChars(env, input, NULL);
    const char *out = output ? (*env)->GetStringUTFChars(env, output, NULL) : NULL;
    const char *name = labelsName ? (*env)->GetStringUTFChars(env, labelsName, NULL) : NULL;
    enum { CAPACITY = 65536 };
    uint32_t *nuclei = (uint32_t *)malloc(CAPACITY * sizeof *nuclei);
    QcaFileReport r;
    memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    QcaStatus s = QCA_ERR_INTERNAL;
    if (in && (out || !output) && (name || !labelsName) && nuclei)
        s = qca_segment_file((const QcaModel *)(intptr_t)h, in, out, name, (uint32_t)channel,
                             (whole ? QCA_FILE_WHOLE : 0u) | (measure ? QCA_FILE_MEASURE : 0u), &p, &o,
                             nuclei, CAPACITY, &r);
    if (in) (*env)->ReleaseStringUTFChars(env, input, in);
    if (out) (*env)->ReleaseStringUTFChars(env, output, out);
    if (name) (*env)->ReleaseStringUTFChars(env, labelsName, name);
    if (!nuclei) { throw_plain(env, "out of memory"); return NULL; }
    if (s != QCA_OK) {
        free(nuclei);
        if (!(*env)->ExceptionCheck(env)) throw_msg(env, "segmentation", s);
        return NULL;
    }
    size_t listed = r.frames < CAPACITY ? r.frames : CAPACITY;
    jdoubleArray result = (*env)->NewDoubleArray(env, (jsize)(5 + listed));
    if (result) {
        jdouble head[5] = { (jdouble)r.frames, (jdouble)r.blocks, r.network_s, r.post_s, r.wall_s };
        (*env)->SetDoubleArrayRegion(env, result, 0, 5, head);
        for (size_t i = 0; i < listed; i++) {
            jdouble v = (jdouble)nuclei[i];
            (*env)->SetDoubleArrayRegion(env, result, (jsize)(5 + i), 1, &v);
        }
    }
    free(nuclei);
    return result;
}
