/*
 * C-side checks of the contract: exact status codes for bad input, out-parameters
 * untouched on failure, NULL-safe frees, struct_size versioning, and a real
 * post-processing run. Exits non-zero on the first failed check.
 */
#include <math.h>
#include <stdio.h>
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
    qca_segment_params_default(&p);
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
    p.fg_threshold = 2.0f;
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    qca_segment_params_default(&p);
    p.connectivity = 7;
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    qca_segment_params_default(&p);
    p.struct_size = 0;
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(qca_last_error(), "struct_size") != NULL);
    CHECK(n == 777);
    /* an older caller that knows only the first fields still works */
    qca_segment_params_default(&p);
    p.struct_size = 8 + 3 * sizeof(float);
    CHECK(qca_postprocess_f32(fg, cen, dims, &p, labels, &n) == QCA_OK && n == 1);

    /* models: missing file, not ONNX; out untouched */
    QcaModel *m = (QcaModel *)0x1;
    CHECK(qca_model_load("/nonexistent/nsn.onnx", NULL, NULL, &m) == QCA_ERR_IO);
    CHECK(m == (QcaModel *)0x1);
    CHECK(qca_model_load(NULL, NULL, NULL, &m) == QCA_ERR_NULL_POINTER);
    QcaModelOptions o;
    qca_model_options_default(&o);
    o.device = 42;
    CHECK(qca_model_load_default(&o, &m) == QCA_ERR_INVALID_ARGUMENT);
    CHECK(m == (QcaModel *)0x1);
    qca_model_free(NULL);
    qca_measurements_free(NULL);
    qca_image_free(NULL);

    /* evaluation */
    QcaMetrics met;
    memset(&met, 0, sizeof met);
    CHECK(qca_evaluate(labels, labels, dims, &met) == QCA_OK);
    CHECK(met.iou == 1.0 && met.seg == 1.0 && met.n_gt == 1 && met.n_pred == 1);
    CHECK(qca_evaluate(labels, NULL, dims, &met) == QCA_ERR_NULL_POINTER);

    /* images */
    QcaImage *img = NULL;
    CHECK(qca_image_read("/nonexistent.tif", &img) == QCA_ERR_IO && img == NULL);

    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
