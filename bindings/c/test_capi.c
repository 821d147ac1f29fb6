/*
 * C-side checks of the contract: exact status codes for bad input, out-parameters
 * untouched on failure, NULL-safe frees, struct_size versioning, a real
 * post-processing run, the plan of the embedded model and the option vocabulary
 * (ABI 2). Counts every failed check and exits non-zero if there was one.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcanet.h"

static int failures = 0, checks = 0;
#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
    fprintf(stderr, "FAILED %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, qca_last_error()); } } while (0)

int main(void) {
    size_t dims[3] = {4, 8, 8};
    size_t zero[3] = {4, 0, 8};
    size_t huge[3] = {(size_t)1 << 40, (size_t)1 << 40, 2};
    static float fg[256], cen[256];
    static uint32_t labels[256];
    uint32_t n = 12345;

    CHECK(qca_abi_version() == QCA_ABI_VERSION);
    CHECK(strlen(qca_version()) >= 5);
    CHECK(strcmp(qca_status_str(QCA_ERR_MODEL), "QCA_ERR_MODEL") == 0);
    CHECK(qca_status_str(999) == NULL);

    /* a 4x4x4 cube of foreground with a centre peak */
    for (int z = 0; z < 4; z++) for (int y = 2; y < 6; y++) for (int x = 2; x < 6; x++) {
        fg[(z * 8 + y) * 8 + x] = 0.9f;
        cen[(z * 8 + y) * 8 + x] = (z == 1 && y == 3 && x == 3) ? 0.9f : 0.2f;
    }
    QcaSegmentParams p;
    CHECK(qca_segment_params_default(&p, sizeof p) == QCA_OK);
    CHECK(p.struct_size == sizeof p);
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_OK);
    CHECK(n == 1 && labels[(1 * 8 + 3) * 8 + 3] == 1 && labels[0] == 0);

    /* bad input: exact codes, and n untouched */
    n = 777;
    CHECK(qca_postprocess_f32(NULL, cen, dims, &p, labels, &n) == QCA_ERR_NULL_POINTER);
    CHECK(qca_postprocess_f32(fg, cen, NULL, &p, labels, &n) == QCA_ERR_NULL_POINTER);
    CHECK(qca_postprocess_f32(fg, cen, zero, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(qca_postprocess_f32(fg, cen, huge, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, NULL, &n) == QCA_ERR_NULL_POINTER);
    fg[5] = NAN;
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_NON_FINITE);
    fg[5] = 0.0f;
    p.fg_threshold = 2.0;
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(qca_segment_params_default(&p, sizeof p) == QCA_OK);
    p.connectivity = 7;
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(qca_segment_params_default(&p, sizeof p) == QCA_OK);
    p.struct_size = 0;
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(qca_last_error(), "struct_size") != NULL);
    CHECK(n == 777);
    /* an older caller that knows only the first fields still works */
    CHECK(qca_segment_params_default(&p, sizeof p) == QCA_OK);
    p.struct_size = (uint32_t)(offsetof(QcaSegmentParams, voxel_size) + sizeof p.voxel_size);
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_OK && n == 1);
    /* ABI 1's float voxel_size ended inside ABI 2's double one: refused, not half read */
    n = 777;
    p.struct_size = 4 + 3 * sizeof(float);
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT && n == 777);
    CHECK(sizeof p.voxel_size == 3 * sizeof(double) && sizeof p.fg_threshold == sizeof(double)
          && sizeof p.centre_threshold == sizeof(double) && sizeof p.marker_sigma_um == sizeof(double)
          && sizeof p.min_volume_um3 == sizeof(double));

    /* models: missing file, not ONNX; out untouched */
    QcaModel *m = (QcaModel *)0x1;
    CHECK(qca_model_load("/nonexistent/nsn.onnx", NULL, NULL, &m) == QCA_ERR_IO);
    CHECK(m == (QcaModel *)0x1);
    CHECK(qca_model_load(NULL, NULL, NULL, &m) == QCA_ERR_NULL_POINTER);
    QcaModelOptions o;
    CHECK(qca_model_options_default(&o, sizeof o) == QCA_OK);
    o.device = 42;
    CHECK(qca_model_load_default(&o, &m) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(m == (QcaModel *)0x1);
    qca_model_free(NULL);
    qca_measurements_free(NULL);
    qca_image_free(NULL);

    /* the plan of the embedded model, as qca_segment_* would run it */
    CHECK(qca_model_options_default(&o, sizeof o) == QCA_OK);
    o.device = QCA_DEVICE_CPU;
    QcaModel *dm = NULL;
    CHECK(qca_model_load_default(&o, &dm) == QCA_OK && dm != NULL);
    if (dm) {
        size_t pd[3] = {51, 120, 120};
        size_t needed = 0, again = 0;
        CHECK(qca_segment_params_default(&p, sizeof p) == QCA_OK);
        p.voxel_size[0] = 2.0; p.voxel_size[1] = 0.8; p.voxel_size[2] = 0.8;
        CHECK(qca_plan_json(dm, pd, &p, NULL, 0, &needed) == QCA_OK && needed > 2);
        char *json = (char *)malloc(needed ? needed : 1);
        CHECK(json != NULL);
        if (json) {
            CHECK(qca_plan_json(dm, pd, &p, json, needed, &again) == QCA_OK && again == needed);
            CHECK(strlen(json) == needed - 1 && json[0] == '{' && json[needed - 2] == '}');
            CHECK(strstr(json, "\"resampled\":true") != NULL);
            CHECK(strstr(json, "\"voxel_size_source\":\"caller\"") != NULL);
            /* cut to the capacity, NUL-terminated, the full length still reported */
            again = 0;
            CHECK(qca_plan_json(dm, pd, &p, json, 8, &again) == QCA_OK && again == needed && strlen(json) == 7);
            /* an invalid parameter fails here as in qca_segment_*, needed untouched */
            p.fg_threshold = 2.0;
            again = 4242;
            CHECK(qca_plan_json(dm, pd, &p, json, needed, &again) == QCA_ERR_INVALID_ARGUMENT && again == 4242);
            CHECK(qca_plan_json(dm, pd, &p, NULL, 0, &again) == QCA_ERR_INVALID_ARGUMENT && again == 4242);
            free(json);
        }
        CHECK(qca_segment_params_default(&p, sizeof p) == QCA_OK);
        again = 4242;
        CHECK(qca_plan_json(NULL, pd, &p, NULL, 0, &again) == QCA_ERR_NULL_POINTER && again == 4242);
        CHECK(qca_plan_json(dm, NULL, &p, NULL, 0, &again) == QCA_ERR_NULL_POINTER && again == 4242);
        CHECK(qca_plan_json(dm, pd, &p, NULL, 16, &again) == QCA_ERR_NULL_POINTER && again == 4242);
        /* NULL parameters are the defaults: the model's grid, no resampling */
        CHECK(qca_plan_json(dm, pd, NULL, NULL, 0, &again) == QCA_OK && again > 2);
        /* the device in the one vocabulary */
        char desc[512];
        CHECK(qca_model_describe(dm, desc, sizeof desc, NULL) == QCA_OK);
        CHECK(strstr(desc, " on cpu") != NULL);
        /* block jobs: exact statuses, out-parameters untouched on failure */
        QcaBlockOptions bo;
        CHECK(qca_block_options_default(&bo, sizeof bo) == QCA_OK && bo.struct_size == sizeof bo);
        CHECK(bo.core[0] == 0 && bo.block_voxels == 0 && bo.max_nucleus_um == 24.0);
        CHECK(qca_struct_size("QcaBlockOptions") == sizeof bo);
        QcaJob *job = (QcaJob *)0x1;
        CHECK(qca_job_create(dm, "/nonexistent/in.ome.zarr", "/tmp/out.ome.zarr", NULL, 0, NULL, &bo, &job) != QCA_OK);
        CHECK(job == (QcaJob *)0x1);
        CHECK(qca_job_create(dm, "/nonexistent/in.ome.zarr", "/tmp/out.ome.zarr", "name", 0, NULL, NULL, &job)
              == QCA_ERR_INVALID_ARGUMENT && job == (QcaJob *)0x1);
        CHECK(qca_job_create(dm, "/nonexistent/in.ome.zarr", NULL, NULL, 0, NULL, NULL, &job) == QCA_ERR_INVALID_ARGUMENT);
        CHECK(qca_job_create(NULL, "/x", "/y", NULL, 0, NULL, NULL, &job) == QCA_ERR_NULL_POINTER);
        CHECK(qca_job_create(dm, NULL, "/y", NULL, 0, NULL, NULL, &job) == QCA_ERR_NULL_POINTER);
        CHECK(qca_job_create(dm, "/x", "/y", NULL, 0, NULL, NULL, NULL) == QCA_ERR_NULL_POINTER);
        bo.core[0] = 8; /* a core edge given, the others not */
        CHECK(qca_job_create(dm, "/x", "/y", NULL, 0, NULL, &bo, &job) == QCA_ERR_INVALID_ARGUMENT);
        CHECK(strstr(qca_last_error(), "core") != NULL && job == (QcaJob *)0x1);
        CHECK(qca_job_open("/nonexistent/x.qcanet-job", &job) == QCA_ERR_IO && job == (QcaJob *)0x1);
        size_t one = 7, three[3] = {7, 7, 7}, idx[3] = {0, 0, 0};
        uint32_t nn = 7;
        CHECK(qca_job_grid(NULL, &one, three, three, three, three) == QCA_ERR_NULL_POINTER && one == 7);
        CHECK(qca_job_scale(NULL, dm, 0) == QCA_ERR_NULL_POINTER);
        CHECK(qca_job_segment_block(NULL, dm, 0, idx, NULL) == QCA_ERR_NULL_POINTER);
        CHECK(qca_job_stitch(NULL, 0, &nn) == QCA_ERR_NULL_POINTER && nn == 7);
        CHECK(qca_job_prepare_output(NULL) == QCA_ERR_NULL_POINTER);
        CHECK(qca_job_write_block(NULL, 0, idx) == QCA_ERR_NULL_POINTER);
        CHECK(qca_job_finish(NULL) == QCA_ERR_NULL_POINTER);
        CHECK(qca_job_path(NULL, 0, NULL, 0, &one) == QCA_ERR_NULL_POINTER && one == 7);
        qca_job_free(NULL);
        qca_model_free(dm);
    }

    /* named choices: the one vocabulary, old spellings too; out untouched on failure */
    int32_t v = -99;
    CHECK(qca_option_value("markers", "local_max", &v) == QCA_OK && v == QCA_MARKERS_LOCAL_MAXIMA);
    CHECK(qca_option_value("markers", "local-max", &v) == QCA_OK && v == QCA_MARKERS_LOCAL_MAXIMA);
    CHECK(qca_option_value("markers", "components", &v) == QCA_OK && v == QCA_MARKERS_COMPONENTS);
    CHECK(qca_option_value("landscape", "edt", &v) == QCA_OK && v == QCA_LANDSCAPE_DISTANCE);
    CHECK(qca_option_value("landscape", "centre", &v) == QCA_OK && v == QCA_LANDSCAPE_CENTRE);
    CHECK(qca_option_value("device", "cuda", &v) == QCA_OK && v == QCA_DEVICE_CUDA);
    CHECK(qca_option_value("precision", "tf32", &v) == QCA_OK && v == QCA_PRECISION_TF32);
    CHECK(qca_option_value("connectivity", "18", &v) == QCA_OK && v == 18);
    v = -99;
    CHECK(qca_option_value("markers", "no-such-rule", &v) == QCA_ERR_INVALID_ARGUMENT && v == -99);
    CHECK(qca_option_value("no-such-option", "cpu", &v) == QCA_ERR_INVALID_ARGUMENT && v == -99);
    CHECK(qca_option_value("connectivity", "7", &v) == QCA_ERR_INVALID_ARGUMENT && v == -99);
    CHECK(qca_option_value(NULL, "cpu", &v) == QCA_ERR_NULL_POINTER && v == -99);
    CHECK(qca_option_value("device", NULL, &v) == QCA_ERR_NULL_POINTER && v == -99);
    CHECK(qca_option_value("device", "cpu", NULL) == QCA_ERR_NULL_POINTER);

    /* evaluation */
    QcaMetrics met;
    memset(&met, 0, sizeof met);
    CHECK(qca_evaluate(labels, labels, dims, &met) == QCA_OK);
    CHECK(met.iou == 1.0 && met.seg == 1.0 && met.n_gt == 1 && met.n_pred == 1);
    CHECK(QCA_MATCH_THRESHOLDS == 5 && sizeof met.ap / sizeof met.ap[0] == QCA_MATCH_THRESHOLDS);
    CHECK(met.match_threshold[0] == 0.5 && met.match_threshold[4] == 0.9);
    for (int i = 0; i < QCA_MATCH_THRESHOLDS; i++) {
        CHECK(met.ap[i] == 1.0 && met.match_f1[i] == 1.0 && met.match_tp[i] == 1
              && met.match_fp[i] == 0 && met.match_fn[i] == 0);
    }
    CHECK(met.f1 == met.match_f1[0]);
    CHECK(qca_evaluate(labels, NULL, dims, &met) == QCA_ERR_NULL_POINTER);

    /* images */
    QcaImage *img = NULL;
    CHECK(qca_image_read("/nonexistent.tif", &img) == QCA_ERR_IO && img == NULL);

    /* time lapses: one nucleus (a 2x2x2 cube) moving 1 voxel a frame, dividing at frame 2
       into two 1x2x2 daughters */
    {
        size_t td[3] = {4, 8, 8};
        static uint32_t f[3][256];
        for (int t = 0; t < 3; t++) for (int z = 1; z < 3; z++) for (int y = 2; y < 4; y++) for (int x = 2; x < 4; x++) {
            if (t < 2) f[t][(z * 8 + y) * 8 + x + t] = 7;
            else if (z == 1) { f[t][(z * 8 + y) * 8 + x - 1] = 3; f[t][(z * 8 + y + 3) * 8 + x + 1] = 4; }
        }
        double vs[3] = {1.0, 1.0, 1.0};
        QcaTracker *tr = (QcaTracker *)0x1;
        CHECK(qca_track_new(NULL, &tr) == QCA_ERR_NULL_POINTER && tr == (QcaTracker *)0x1);
        double bad_vs[3] = {0.0, 1.0, 1.0};
        CHECK(qca_track_new(bad_vs, &tr) == QCA_ERR_INVALID_ARGUMENT && tr == (QcaTracker *)0x1);
        tr = NULL;
        CHECK(qca_track_new(vs, &tr) == QCA_OK && tr != NULL);
        for (int t = 0; t < 3; t++) CHECK(qca_track_add_frame(tr, f[t], NULL, td) == QCA_OK);
        size_t other[3] = {4, 8, 4};
        CHECK(qca_track_add_frame(tr, f[0], NULL, other) == QCA_ERR_INVALID_ARGUMENT);
        CHECK(qca_track_frame_count(tr) == 3 && qca_track_frame_count(NULL) == 0);
        QcaTrackParams tp;
        CHECK(qca_track_params_default(&tp, sizeof tp) == QCA_OK && tp.struct_size == sizeof tp);
        CHECK(tp.max_displacement_um == 8.0 && tp.max_gap == 1);
        CHECK(qca_struct_size("QcaTrackParams") == sizeof tp && qca_struct_size("QcaFrameCriteria") == sizeof(QcaFrameCriteria));
        QcaTracking *res = (QcaTracking *)0x1;
        tp.overlap_weight = 2.0;
        CHECK(qca_track_link(tr, &tp, 0.0, &res) == QCA_ERR_INVALID_ARGUMENT && res == (QcaTracking *)0x1);
        CHECK(qca_track_link(tr, NULL, -1.0, &res) == QCA_ERR_INVALID_ARGUMENT && res == (QcaTracking *)0x1);
        CHECK(qca_track_params_default(&tp, sizeof tp) == QCA_OK);
        res = NULL;
        CHECK(qca_track_link(tr, &tp, 5.0, &res) == QCA_OK && res != NULL);
        CHECK(qca_tracking_count(res, QCA_TABLE_TRACKS) == 3);
        CHECK(qca_tracking_count(res, QCA_TABLE_DIVISIONS) == 1);
        CHECK(qca_tracking_count(res, QCA_TABLE_CRITERIA) == 3);
        CHECK(qca_tracking_count(res, QCA_TABLE_ROUNDS) == 1);
        CHECK(qca_tracking_count(res, QCA_TABLE_POINTS) == 4);
        CHECK(qca_tracking_count(res, 99) == 0 && qca_tracking_count(NULL, QCA_TABLE_TRACKS) == 0);
        QcaTrack t0;
        CHECK(qca_tracking_get(res, QCA_TABLE_TRACKS, 0, &t0, sizeof t0) == QCA_OK);
        CHECK(t0.id == 1 && t0.start == 0 && t0.end == 1 && t0.parent == 0);
        QcaDivision dv;
        CHECK(qca_tracking_get(res, QCA_TABLE_DIVISIONS, 0, &dv, sizeof dv) == QCA_OK);
        CHECK(dv.frame == 2 && dv.parent == 1 && dv.daughters[0] == 2 && dv.daughters[1] == 3);
        QcaFrameCriteria fc;
        CHECK(qca_tracking_get(res, QCA_TABLE_CRITERIA, 2, &fc, sizeof fc) == QCA_OK);
        CHECK(fc.frame == 2 && fc.nuclei == 2 && fc.divisions == 1 && fc.time == 10.0 && fc.volume_um3_sum == 8.0);
        CHECK(fc.surface_um2_mean > 0.0 && fc.nearest_neighbour_um_mean > 0.0);
        QcaDivisionRound rd;
        CHECK(qca_tracking_get(res, QCA_TABLE_ROUNDS, 0, &rd, sizeof rd) == QCA_OK);
        CHECK(rd.round == 1 && rd.divisions == 1 && rd.first_frame == 2 && rd.spread_frames == 0);
        /* wrong size, index or table: refused, *out untouched */
        memset(&t0, 0xab, sizeof t0);
        CHECK(qca_tracking_get(res, QCA_TABLE_TRACKS, 0, &t0, sizeof t0 - 1) == QCA_ERR_INVALID_ARGUMENT);
        CHECK(qca_tracking_get(res, QCA_TABLE_TRACKS, 3, &t0, sizeof t0) == QCA_ERR_INVALID_ARGUMENT);
        CHECK(qca_tracking_get(res, 0, 0, &t0, sizeof t0) == QCA_ERR_INVALID_ARGUMENT);
        CHECK(qca_tracking_get(res, QCA_TABLE_TRACKS, 0, NULL, sizeof t0) == QCA_ERR_NULL_POINTER);
        CHECK(t0.id == 0xabababab);
        /* the CTC label volume of frame 2: labels 3, 4 become the daughters' tracks */
        CHECK(qca_tracking_relabel(res, 2, f[2], td) == QCA_OK);
        CHECK(f[2][(1 * 8 + 2) * 8 + 1] == 2 && f[2][(1 * 8 + 5) * 8 + 3] == 3);
        CHECK(qca_tracking_relabel(res, 3, f[2], td) == QCA_ERR_INVALID_ARGUMENT);
        qca_tracking_free(res);
        qca_tracking_free(NULL);
        qca_track_free(tr);
        qca_track_free(NULL);
    }

    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
