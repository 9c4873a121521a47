/*
 * markcount: a QEMU TCG plugin that counts executed guest instructions and snapshots the count each
 * time the guest executes a marker function.
 *
 *   qemu-system-arm ... -plugin ./libmarkcount.so,addr=0x1234,out=marks.txt
 *
 * addr: address of the marker function (the Thumb bit may be set; it is ignored).
 * out:  file that receives one line per marker hit ("mark <running count>") and, at exit,
 *       "total <count>".
 * per=insn (optional): count with one callback per instruction instead of one per block; slower,
 *       and the cross-check that block counting is exact here (run.sh --check-plugin).
 *
 * Counting: each translated block adds its instruction count when it starts executing. In the
 * regions the harness measures nothing interrupts a block halfway (no interrupts are enabled and no
 * semihosting call sits between two markers), so the difference of two snapshots is exactly the
 * number of instructions executed between the two marker calls plus the marker's own body (a
 * constant the harness measures with an empty region and subtracts).
 *
 * The plugin API is declared here (the few functions used, unchanged from QEMU 4.2 to 10.x) rather
 * than included from QEMU's GPL header, which Debian does not package. QEMU_PLUGIN_API_VERSION must
 * be the running QEMU's plugin API version: 1 for QEMU <= 8.2, 2 for 9.0, 3 for 9.1, 4 after that
 * (run.sh picks it from `qemu-system-arm --version`).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef QEMU_PLUGIN_API_VERSION
#define QEMU_PLUGIN_API_VERSION 1
#endif

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

EXPORT int qemu_plugin_version = QEMU_PLUGIN_API_VERSION;

static uint64_t count;  /* one vCPU (Cortex-M4): no atomics needed */
static uint64_t marker; /* marker address, Thumb bit cleared */
static FILE *out;
static bool per_insn;

static void tb_exec(unsigned int vcpu, void *n_insns)
{
    (void)vcpu;
    count += (uint64_t)(uintptr_t)n_insns;
}

static void insn_exec(unsigned int vcpu, void *unused)
{
    (void)vcpu;
    (void)unused;
    count++;
}

static void mark_exec(unsigned int vcpu, void *unused)
{
    (void)vcpu;
    (void)unused;
    fprintf(out, "mark %" PRIu64 "\n", count);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    /* Block callbacks run before the first instruction's callbacks; per-instruction ones in the
       order registered, so the marker sees the count including its own instruction either way. */
    if (!per_insn) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (per_insn) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, insn_exec, QEMU_PLUGIN_CB_NO_REGS, NULL);
        }
        if (qemu_plugin_insn_vaddr(insn) == marker) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, mark_exec, QEMU_PLUGIN_CB_NO_REGS, NULL);
        }
    }
}

static void at_exit(qemu_plugin_id_t id, void *unused)
{
    (void)id;
    (void)unused;
    fprintf(out, "total %" PRIu64 "\n", count);
    fclose(out);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    const char *path = NULL;
    bool have_addr = false;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "addr=", 5) == 0) {
            char *end;
            marker = strtoull(argv[i] + 5, &end, 0) & ~(uint64_t)1;
            have_addr = *end == '\0' && end != argv[i] + 5;
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        } else if (strcmp(argv[i], "per=insn") == 0) {
            per_insn = true;
        } else if (strcmp(argv[i], "per=tb") == 0) {
            per_insn = false;
        } else {
            fprintf(stderr, "markcount: unknown argument %s (expected addr=<marker address>, out=<file>, per=tb|insn)\n", argv[i]);
            return -1;
        }
    }
    if (!have_addr || path == NULL) {
        fprintf(stderr, "markcount: needs addr=<marker address> and out=<file>\n");
        return -1;
    }
    out = fopen(path, "w");
    if (out == NULL) {
        perror(path);
        return -1;
    }
    /* Line-buffered: marks survive however QEMU ends. */
    setvbuf(out, NULL, _IOLBF, 0);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
