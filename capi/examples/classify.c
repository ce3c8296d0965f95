/*
 * classify.c: the res2net C API from C.
 *
 *   classify [--device auto|gpu|cpu] MODEL.safetensors IMAGE...
 *       the 5 most probable classes of each PNG/JPEG image
 *   classify [--device auto|gpu|cpu] --bundled IMAGE...
 *       the same with the bundled digits model
 *   classify [--device auto|gpu|cpu] MODEL.safetensors --tensor INPUT.f32 N H W
 *       the logits of a raw little-endian float32 NCHW tensor (already normalized), one line per
 *       image, values separated by spaces
 *
 * Build (from the repository root):
 *   cargo build --release -p res2net-capi
 *   cc -std=c99 -Wall -Wextra -O2 -Icapi/include capi/examples/classify.c \
 *      -Ltarget/release -lres2net -Wl,-rpath,"$PWD/target/release" -o classify
 *
 * Exit codes as the res2net command: 0 success, 2 bad input, 1 anything else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "res2net.h"

#define TOP 5

static int fail(int code, const char *what) {
    const char *why = r2n_last_error();
    fprintf(stderr, "error: %s: %s\n", what, why ? why : "unknown error");
    return code;
}

static int usage(void) {
    fprintf(stderr,
            "usage: classify [--device auto|gpu|cpu] (MODEL.safetensors | --bundled) IMAGE...\n"
            "       classify [--device auto|gpu|cpu] MODEL.safetensors --tensor INPUT.f32 N H W\n");
    return 2;
}

/* Parses a positive size; 0 on anything else. */
static size_t parse_size(const char *s) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0' || s[0] == '-') {
        return 0;
    }
    return (size_t)v;
}

/* Reads exactly `count` floats from `path` into a new buffer; NULL (with a message) otherwise. */
static float *read_floats(const char *path, size_t count) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: %s: expected a readable file\n", path);
        return NULL;
    }
    float *data = malloc(count * sizeof(float));
    size_t got = data ? fread(data, sizeof(float), count, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (!data || got != count || extra) {
        fprintf(stderr, "error: %s: expected exactly %zu floats (%zu bytes)\n", path, count,
                count * sizeof(float));
        free(data);
        return NULL;
    }
    return data;
}

static int run_tensor(r2n_model *m, const char *path, size_t n, size_t h, size_t w) {
    if (n == 0 || h == 0 || w == 0 || n > ((size_t)-1) / 3 / h / w / sizeof(float)) {
        fprintf(stderr, "error: N, H and W: expected positive sizes that fit in memory\n");
        return 2;
    }
    size_t classes = r2n_model_num_classes(m);
    float *input = read_floats(path, n * 3 * h * w);
    float *logits = malloc(n * classes * sizeof(float));
    if (!input || !logits) {
        free(input);
        free(logits);
        return 2;
    }
    int status = r2n_model_infer(m, input, n, h, w, logits, n * classes);
    if (status == R2N_OK) {
        for (size_t i = 0; i < n; i++) {
            for (size_t c = 0; c < classes; c++) {
                printf(c ? " %.9g" : "%.9g", (double)logits[i * classes + c]);
            }
            printf("\n");
        }
    } else {
        fail(status, "inference");
    }
    free(input);
    free(logits);
    return status;
}

static int run_images(r2n_model *m, char **paths, int count) {
    size_t classes_n = r2n_model_num_classes(m);
    size_t k = classes_n < TOP ? classes_n : TOP;
    size_t classes[TOP];
    float probs[TOP];
    int worst = R2N_OK;
    for (int i = 0; i < count; i++) {
        int status = r2n_model_classify_image(m, paths[i], k, classes, probs);
        if (status != R2N_OK) {
            fail(status, paths[i]);
            worst = status > worst ? status : worst;
            continue;
        }
        printf("%s:", paths[i]);
        for (size_t j = 0; j < k; j++) {
            printf(" %s %.4f%s", r2n_model_label(m, classes[j]), (double)probs[j],
                   j + 1 < k ? "," : "");
        }
        printf("\n");
    }
    return worst;
}

int main(int argc, char **argv) {
    int device = R2N_DEVICE_AUTO;
    int arg = 1;
    if (arg + 1 < argc && strcmp(argv[arg], "--device") == 0) {
        const char *d = argv[arg + 1];
        if (strcmp(d, "auto") == 0) {
            device = R2N_DEVICE_AUTO;
        } else if (strcmp(d, "gpu") == 0) {
            device = R2N_DEVICE_GPU;
        } else if (strcmp(d, "cpu") == 0) {
            device = R2N_DEVICE_CPU;
        } else {
            return usage();
        }
        arg += 2;
    }
    if (arg + 1 >= argc) {
        return usage();
    }

    r2n_model *m = strcmp(argv[arg], "--bundled") == 0
                       ? r2n_model_bundled(device, R2N_PRECISION_F32)
                       : r2n_model_load(argv[arg], device);
    if (!m) {
        /* A constructor's failure: the last status tells bad input from other errors. */
        return fail(r2n_last_status(), argv[arg]);
    }
    arg++;
    if (r2n_model_fallback_reason(m)) {
        fprintf(stderr, "warning: running on the CPU: %s\n", r2n_model_fallback_reason(m));
    }
    fprintf(stderr, "%s, %zu classes, on %s\n", r2n_model_arch(m), r2n_model_num_classes(m),
            r2n_model_device(m));

    int status;
    if (strcmp(argv[arg], "--tensor") == 0) {
        if (argc - arg != 5) {
            r2n_model_free(m);
            return usage();
        }
        status = run_tensor(m, argv[arg + 1], parse_size(argv[arg + 2]), parse_size(argv[arg + 3]),
                            parse_size(argv[arg + 4]));
    } else {
        status = run_images(m, argv + arg, argc - arg);
    }
    r2n_model_free(m);
    return status;
}
