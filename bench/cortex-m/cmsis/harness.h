/* Shared by the CMSIS-NN count program: semihosting output, the plugin's marker, the network table
   that bench/cortex-m/gen writes (net.c) from the MLPerf Tiny IC .tflite. */
#ifndef RSIM_CM_HARNESS_H
#define RSIM_CM_HARNESS_H
#include <stdint.h>

void bench_puts(const char *s);
void bench_exit(int code) __attribute__((noreturn));
void rsim_cm_mark(void);

enum net_kind { NET_CONV, NET_ADD, NET_AVGPOOL, NET_RESHAPE, NET_FC, NET_SOFTMAX };

typedef struct {
    int32_t n, h, w, c;
} net_shape;

/* One op of the network with TFLM's (and CMSIS-NN's) parameter conventions: in*_offset = -zero
   point of the input, out_offset = zero point of the output, shifts negative to the right. */
typedef struct {
    int kind;
    int in0, in1, out; /* tensor ids (the .tflite tensor indices) */
    net_shape in_shape, out_shape;
    int32_t kh, kw, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t in0_offset, in1_offset, out_offset, filter_offset;
    int32_t act_min, act_max;
    const int8_t *weights;                 /* conv OHWI, fc [out][in] */
    const int32_t *bias;                   /* conv/fc */
    const int32_t *mult, *shift;           /* conv: per output channel */
    int32_t mult0, shift0, mult1, shift1;  /* add: inputs; softmax: mult0/shift0 */
    int32_t out_mult, out_shift;           /* add, fc */
    int32_t left_shift, diff_min;          /* add; softmax */
} net_op;

extern const net_op net_ops[];
extern const int net_op_count;
/* Activation buffers by tensor id (NULL for constants), their byte lengths. */
extern int8_t *const net_tensor[];
extern const int32_t net_tensor_len[];
extern const int net_input_id, net_output_id;
extern const int8_t net_input[];
#endif
