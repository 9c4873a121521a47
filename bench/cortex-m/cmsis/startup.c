/* Minimal bare-metal start for QEMU mps2-an386 and semihosting output/exit (no libc start files). */
#include <stdint.h>
#include <string.h>
#include "harness.h"

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;
int main(void);
void reset_handler(void);

static void fault_handler(void)
{
    bench_puts("CMSIS_ERROR fault\n");
    bench_exit(1);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_stack_top, reset_handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler,
};

void reset_handler(void)
{
    /* FPU on (CP10/CP11 full access): -mfloat-abi=hard code may use it. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
    uint32_t *src = &_data_load;
    for (uint32_t *dst = &_data_start; dst < &_data_end;) *dst++ = *src++;
    for (uint32_t *dst = &_bss_start; dst < &_bss_end;) *dst++ = 0;
    bench_exit(main());
}

/* Arm semihosting: r0 = operation, r1 = argument, BKPT 0xAB on M-profile. */
static int semihost(int op, const void *arg)
{
    register int r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Writes to the host's stdout: SYS_OPEN(":tt", "w") once, then SYS_WRITE (as Rust's hstdout does). */
void bench_puts(const char *s)
{
    static int handle = -1;
    if (handle < 0) {
        static const char tt[] = ":tt";
        const uint32_t open_args[3] = {(uint32_t)(uintptr_t)tt, 4 /* "w" */, sizeof tt - 1};
        handle = semihost(0x01 /* SYS_OPEN */, open_args);
        if (handle < 0) return;
    }
    const uint32_t write_args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)s, (uint32_t)strlen(s)};
    semihost(0x05 /* SYS_WRITE */, write_args);
}

void bench_exit(int code)
{
    /* SYS_EXIT with ADP_Stopped_ApplicationExit; QEMU's exit status is 0 for it. Failure:
       ADP_Stopped_RunTimeErrorUnknown, which QEMU turns into exit status 1. */
    semihost(0x18, (const void *)(uintptr_t)(code == 0 ? 0x20026 : 0x20023));
    for (;;) {
    }
}

/* The marker the plugin watches: every call snapshots the executed-instruction count. */
__attribute__((noipa, used)) void rsim_cm_mark(void)
{
    __asm volatile("" ::: "memory");
}
