/* Preloaded into a benchmark's processes (LD_PRELOAD), this makes them see an AVX2 CPU: the CPUID
 * instruction reports no AVX-512, no VNNI (AVX-512 or AVX), no bf16 and no AMX, so PyTorch, MKL, oneDNN
 * and ONNX Runtime each pick their AVX2 kernels, as on most laptops and many cloud CPUs.
 *
 * How: Linux can make CPUID fault in user space (arch_prctl ARCH_SET_CPUID, "cpuid_fault" in
 * /proc/cpuinfo). The fault (SIGSEGV) lands here; we run the real CPUID with faulting off for a moment,
 * clear the feature bits above, and step over the instruction. The setting is per thread, inherited by
 * the threads and processes started later, and reset by execve, where LD_PRELOAD sets it again.
 * Programs that install their own SIGSEGV handler (Python's faulthandler: pytest, torchrun) would take the
 * fault from us, so sigaction() for SIGSEGV is intercepted: their handler is kept aside and called for real
 * faults, ours stays in place for CPUID.
 * It is an emulation: the clock, caches and memory stay this CPU's. Built by benchmarks/common.py. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static void real_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(subleaf));
}

static void hide_features(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    if (leaf == 7 && subleaf == 0) {
        /* EBX: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL */
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
        r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512_FP16, AMX-TILE, AMX-INT8 */
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && subleaf == 1) {
        r[0] &= ~(BIT(4) | BIT(5) | BIT(23));  /* EAX: AVX-VNNI, AVX512_BF16, AVX-IFMA */
        r[3] &= ~(BIT(4) | BIT(5));            /* EDX: AVX-VNNI-INT8, AVX-NE-CONVERT */
    } else if (leaf == 0xd && subleaf == 0) {
        r[0] &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));  /* EAX: AVX-512 and AMX register state */
    }
}

static struct sigaction program_action;  /* the SIGSEGV handler the program asked for (SIG_DFL at first) */

static int real_sigaction(int signum, const struct sigaction *action, struct sigaction *old) {
    static int (*next)(int, const struct sigaction *, struct sigaction *);
    if (!next)
        next = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    return next(signum, action, old);
}

/* The program's sigaction(): for SIGSEGV, its handler is recorded, not installed (on_fault calls it). */
int sigaction(int signum, const struct sigaction *action, struct sigaction *old) {
    if (signum != SIGSEGV)
        return real_sigaction(signum, action, old);
    if (old)
        *old = program_action;
    if (action)
        program_action = *action;
    return 0;
}

static void on_fault(int signal_number, siginfo_t *info, void *context) {
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {  /* not CPUID: a real fault, for the program's handler */
        if (program_action.sa_handler == SIG_DFL || program_action.sa_handler == SIG_IGN) {
            real_sigaction(SIGSEGV, &program_action, NULL);  /* it crashes as it would have */
        } else if (program_action.sa_flags & SA_SIGINFO) {
            program_action.sa_sigaction(signal_number, info, context);
        } else {
            program_action.sa_handler(signal_number);
        }
        return;
    }
    uint32_t leaf = (uint32_t)reg[REG_RAX], subleaf = (uint32_t)reg[REG_RCX], r[4];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    real_cpuid(leaf, subleaf, r);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    hide_features(leaf, subleaf, r);
    reg[REG_RAX] = r[0], reg[REG_RBX] = r[1], reg[REG_RCX] = r[2], reg[REG_RDX] = r[3];
    reg[REG_RIP] += 2;  /* CPUID is 0F A2 */
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO;
    program_action.sa_handler = SIG_DFL;
    real_sigaction(SIGSEGV, &action, NULL);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);  /* from here on CPUID faults */
}
