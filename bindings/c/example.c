/*
 * qcanet C example: segment the nuclei of a 3D stack and print what was found.
 *
 *   example INPUT.tif [LABELS_OUT.tif]
 *
 * Reads the stack through the library (any 8/16/32-bit TIFF; the calibration is
 * taken from the file, else BBBC050's 1.75 x 0.8 x 0.8 um is assumed), segments
 * it with the embedded default model, prints the nucleus count and one line per
 * nucleus, and optionally writes the label image. Every call is checked; on
 * failure qca_last_error() says why. Compiles as C99 and as C++.
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "qcanet.h"

static int fail(const char *what, QcaStatus s) {
    fprintf(stderr, "example: %s failed: %s (%s)\n", what, qca_last_error(), qca_status_str(s));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s INPUT.tif [LABELS_OUT.tif]\n", argv[0]);
        return 2;
    }
    if (qca_abi_version() != QCA_ABI_VERSION) {
        fprintf(stderr, "example: built for ABI %d, library has %u\n", QCA_ABI_VERSION, qca_abi_version());
        return 1;
    }
    printf("qcanet %s\n", qca_version());

    /* 1. read the stack (the library owns the image until qca_image_free) */
    QcaImage *img = NULL;
    QcaStatus s = qca_image_read(argv[1], &img);
    if (s != QCA_OK) return fail("qca_image_read", s);
    QcaImageInfo info;
    info.struct_size = sizeof info;
    s = qca_image_info(img, &info);
    if (s != QCA_OK) { qca_image_free(img); return fail("qca_image_info", s); }
    size_t n = info.dims[0] * info.dims[1] * info.dims[2];
    float *voxels = (float *)malloc(n * sizeof *voxels);
    uint32_t *labels = (uint32_t *)malloc(n * sizeof *labels);
    if (!voxels || !labels) { fprintf(stderr, "example: out of memory\n"); return 1; }
    s = qca_image_volume_f32(img, 0, 0, voxels);
    qca_image_free(img);
    if (s != QCA_OK) return fail("qca_image_volume_f32", s);
    printf("%s: %zu x %zu x %zu voxels (z, y, x)\n", argv[1], info.dims[0], info.dims[1], info.dims[2]);

    /* 2. load the embedded model (CPU); the caller frees it with qca_model_free */
    QcaModelOptions opts;
    qca_model_options_default(&opts, sizeof opts);
    opts.device = QCA_DEVICE_CPU;
    QcaModel *model = NULL;
    s = qca_model_load_default(&opts, &model);
    if (s != QCA_OK) return fail("qca_model_load_default", s);

    /* 3. segment: every parameter as the model says, except the voxel size */
    QcaSegmentParams p;
    qca_segment_params_default(&p, sizeof p);
    double vs[3] = {1.75, 0.8, 0.8};
    if (info.has_voxel_size) { vs[0] = info.voxel_size_um[0]; vs[1] = info.voxel_size_um[1]; vs[2] = info.voxel_size_um[2]; }
    p.voxel_size[0] = vs[0]; p.voxel_size[1] = vs[1]; p.voxel_size[2] = vs[2];
    QcaTimings t; /* where the time went (optional: leave p.timings NULL) */
    memset(&t, 0, sizeof t);
    t.struct_size = sizeof t;
    p.timings = &t;
    uint32_t count = 0;
    s = qca_segment_f32(model, voxels, info.dims, &p, labels, &count);
    qca_model_free(model);
    if (s != QCA_OK) return fail("qca_segment_f32", s);
    printf("nuclei: %u\n", count);
    printf("seconds: prepare %.3f, network %.3f, post-processing %.3f (markers %.3f, watershed %.3f)\n",
           t.prepare_s, t.network_s, t.post_s, t.markers_s, t.watershed_s);

    /* 4. measure: volume, centroid and mean intensity of each nucleus */
    QcaMeasurements *m = NULL;
    s = qca_measure(labels, voxels, info.dims, vs, &m);
    if (s != QCA_OK) return fail("qca_measure", s);
    printf("label  volume_um3  centroid_z_um  centroid_y_um  centroid_x_um  mean_intensity\n");
    for (size_t i = 0; i < qca_measurements_count(m); i++) {
        QcaNucleus k;
        if (qca_measurements_get(m, i, &k) != QCA_OK) break;
        printf("%5u  %10.1f  %13.2f  %13.2f  %13.2f  %14.1f\n", k.label, k.volume_um3, k.centroid_um[0],
               k.centroid_um[1], k.centroid_um[2], k.mean_intensity);
    }
    qca_measurements_free(m);

    /* 5. optionally save the labels (written atomically, calibrated for Fiji) */
    if (argc > 2) {
        s = qca_labels_write(argv[2], labels, info.dims, 1, vs);
        if (s != QCA_OK) return fail("qca_labels_write", s);
        printf("labels written to %s\n", argv[2]);
    }
    free(voxels);
    free(labels);
    return 0;
}
