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
