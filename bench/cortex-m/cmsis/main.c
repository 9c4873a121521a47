/*
 * CMSIS-NN side of bench/cortex-m: runs the MLPerf Tiny IC network (ResNet-8) op by op with the
 * CMSIS-NN kernels TFLite Micro's CMSIS-NN port calls (arm_convolve_wrapper_s8, arm_elementwise_add_s8,
 * arm_avgpool_s8, arm_fully_connected_s8, arm_softmax_s8), built for the Cortex-M4 with its DSP
 * extension. Each op sits between two calls of rsim_cm_mark(), whose executions the markcount plugin
 * counts; nothing else runs between them. Afterwards it prints, over semihosting, one line per
 * measured region:
 *   REGION <n> <label> crc=<crc32 of the op's output>
 * and "CMSIS_DONE". Work buffers and FC kernel sums (TFLM's Prepare) are set up before the first marker.
 */
#include <string.h>
#include "arm_nnfunctions.h"
#include "harness.h"

#define SCRATCH_BYTES (64 * 1024)
static int8_t scratch[SCRATCH_BYTES] __attribute__((aligned(16)));
static int32_t fc_sums[1024];

static uint32_t crc32(const int8_t *p, int32_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (int32_t i = 0; i < n; i++) {
        c ^= (uint8_t)p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_u32(uint32_t v, int base)
{
    char buf[12];
    int i = 11;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && i > 0);
    bench_puts(&buf[i]);
}

static void fail(const char *what, int op)
{
    bench_puts("CMSIS_ERROR ");
    bench_puts(what);
    bench_puts(" op ");
    put_u32((uint32_t)op, 10);
    bench_puts("\n");
    bench_exit(1);
}

static cmsis_nn_dims dims(net_shape s)
{
    cmsis_nn_dims d = {s.n, s.h, s.w, s.c};
    return d;
}

static const char *const KIND[] = {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"};

/* Scratch each op needs (checked before measuring), and the op itself. */
static int32_t scratch_needed(const net_op *op)
{
    switch (op->kind) {
    case NET_CONV: {
        cmsis_nn_conv_params cp = {0};
        cp.stride.h = op->stride_h, cp.stride.w = op->stride_w;
        cp.padding.h = op->pad_top, cp.padding.w = op->pad_left;
        cp.dilation.h = op->dil_h, cp.dilation.w = op->dil_w;
        cmsis_nn_dims in = dims(op->in_shape), out = dims(op->out_shape);
        cmsis_nn_dims f = {op->out_shape.c, op->kh, op->kw, op->in_shape.c};
        return arm_convolve_wrapper_s8_get_buffer_size(&cp, &in, &f, &out);
    }
    case NET_AVGPOOL:
        return arm_avgpool_s8_get_buffer_size(op->out_shape.w, op->in_shape.c);
    case NET_FC: {
        cmsis_nn_dims f = {op->in_shape.c, 1, 1, op->out_shape.c};
        return arm_fully_connected_s8_get_buffer_size(&f);
    }
    default:
        return 0;
    }
}

static arm_cmsis_nn_status run_op(const net_op *op)
{
    const int8_t *in0 = net_tensor[op->in0];
    int8_t *out = net_tensor[op->out];
    switch (op->kind) {
    case NET_CONV: {
        cmsis_nn_context ctx = {scratch, SCRATCH_BYTES};
        cmsis_nn_conv_params cp;
        cp.input_offset = op->in0_offset;
        cp.output_offset = op->out_offset;
        cp.stride.h = op->stride_h, cp.stride.w = op->stride_w;
        cp.padding.h = op->pad_top, cp.padding.w = op->pad_left;
        cp.dilation.h = op->dil_h, cp.dilation.w = op->dil_w;
        cp.activation.min = op->act_min, cp.activation.max = op->act_max;
        cmsis_nn_per_channel_quant_params q = {(int32_t *)op->mult, (int32_t *)op->shift};
        cmsis_nn_dims in = dims(op->in_shape), o = dims(op->out_shape);
        cmsis_nn_dims f = {op->out_shape.c, op->kh, op->kw, op->in_shape.c};
        cmsis_nn_dims b = {1, 1, 1, op->out_shape.c};
        return arm_convolve_wrapper_s8(&ctx, &cp, &q, &in, in0, &f, op->weights, &b, op->bias, &o, out);
    }
    case NET_ADD: {
        int32_t n = op->out_shape.n * op->out_shape.h * op->out_shape.w * op->out_shape.c;
        return arm_elementwise_add_s8(in0, net_tensor[op->in1], op->in0_offset, op->mult0, op->shift0,
                                      op->in1_offset, op->mult1, op->shift1, op->left_shift, out, op->out_offset,
                                      op->out_mult, op->out_shift, op->act_min, op->act_max, n);
    }
    case NET_AVGPOOL: {
        cmsis_nn_context ctx = {scratch, SCRATCH_BYTES};
        cmsis_nn_pool_params pp;
        pp.stride.h = op->stride_h, pp.stride.w = op->stride_w;
        pp.padding.h = op->pad_top, pp.padding.w = op->pad_left;
        pp.activation.min = op->act_min, pp.activation.max = op->act_max;
        cmsis_nn_dims in = dims(op->in_shape), o = dims(op->out_shape);
        cmsis_nn_dims f = {1, op->kh, op->kw, 1};
        return arm_avgpool_s8(&ctx, &pp, &in, in0, &f, &o, out);
    }
    case NET_RESHAPE:
        /* TFLM's RESHAPE copies when input and output are different buffers. */
        memcpy(out, in0, (size_t)net_tensor_len[op->out]);
        return ARM_CMSIS_NN_SUCCESS;
    case NET_FC: {
        cmsis_nn_context ctx = {fc_sums, (int32_t)sizeof fc_sums};
        cmsis_nn_fc_params fp;
        fp.input_offset = op->in0_offset;
        fp.filter_offset = op->filter_offset;
        fp.output_offset = op->out_offset;
        fp.activation.min = op->act_min, fp.activation.max = op->act_max;
        cmsis_nn_per_tensor_quant_params q = {op->out_mult, op->out_shift};
        cmsis_nn_dims in = {op->in_shape.n, 1, 1, op->in_shape.c};
        cmsis_nn_dims f = {op->in_shape.c, 1, 1, op->out_shape.c};
        cmsis_nn_dims b = {1, 1, 1, op->out_shape.c};
        cmsis_nn_dims o = {op->out_shape.n, 1, 1, op->out_shape.c};
        return arm_fully_connected_s8(&ctx, &fp, &q, &in, in0, &f, op->weights, &b, op->bias, &o, out);
    }
    case NET_SOFTMAX:
        arm_softmax_s8(in0, op->in_shape.n, op->in_shape.c, op->mult0, op->shift0, op->diff_min, out);
        return ARM_CMSIS_NN_SUCCESS;
    default:
        return ARM_CMSIS_NN_ARG_ERROR;
    }
}

int main(void)
{
    static arm_cmsis_nn_status status[64];
    if (net_op_count > 64) fail("too many ops", net_op_count);
    for (int i = 0; i < net_op_count; i++) {
        const net_op *op = &net_ops[i];
        int32_t need = scratch_needed(op);
        if (need > SCRATCH_BYTES || (op->kind == NET_FC && need > (int32_t)sizeof fc_sums)) fail("scratch too small", i);
        if (op->kind == NET_FC && need > 0) {
            /* TFLM computes these once in Prepare (arm_vector_sum_s8); not part of an invoke. */
            arm_vector_sum_s8(fc_sums, op->in_shape.c, op->out_shape.c, op->weights, op->in0_offset, 0, op->bias);
        }
    }
    memcpy(net_tensor[net_input_id], net_input, (size_t)net_tensor_len[net_input_id]);

    /* Region 0 is empty: the markers' own cost, which the harness subtracts from every region. */
    rsim_cm_mark();
    rsim_cm_mark();
    for (int i = 0; i < net_op_count; i++) {
        rsim_cm_mark();
        status[i] = run_op(&net_ops[i]);
        rsim_cm_mark();
    }

    bench_puts("REGION 0 empty crc=0\n");
    for (int i = 0; i < net_op_count; i++) {
        if (status[i] != ARM_CMSIS_NN_SUCCESS) fail("kernel returned an error", i);
        bench_puts("REGION ");
        put_u32((uint32_t)(i + 1), 10);
        bench_puts(" op");
        put_u32((uint32_t)i, 10);
        bench_puts(":");
        bench_puts(KIND[net_ops[i].kind]);
        bench_puts(" crc=");
        put_u32(crc32(net_tensor[net_ops[i].out], net_tensor_len[net_ops[i].out]), 16);
        bench_puts("\n");
    }
    bench_puts("CMSIS_DONE\n");
    return 0;
}
