// The time a cache line takes to go from one core to the other and back, between the first two CPUs this process may run
// on: the cost of every hand-off between ModelGen's two threads. On the 2-vCPU VMs it is not fixed: the host moves the
// vCPUs between placements where it reads ~50-60 ns and ~300-350 ns, and in the slow one the workloads that hand work to
// the second core many times per call (recurrent training, the MobileNet block at batch 1) slow down by up to 2.5x while
// large products barely notice. compare.sh runs it before and after every workload, so each round says where it stood.
// Prints the median of 15 batches of 2000 round trips, in ns (nothing, exit 0, with fewer than two CPUs).
// Build: gcc -O2 -pthread round_trip.c -o round_trip
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { Batches = 15, Trips = 2000 };
static _Alignas(128) atomic_int ball;
static int cpus[2];

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Returns every odd value as the next even one.
static void *partner(void *unused) {
    (void)unused;
    pin(cpus[1]);
    for (int i = 0; i < Batches * Trips; i++) {
        while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 1) {}
        atomic_store_explicit(&ball, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof allowed, &allowed);
    int found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
        if (CPU_ISSET(cpu, &allowed)) cpus[found++] = cpu;
    if (found < 2) return 0;
    pin(cpus[0]);
    pthread_t thread;
    pthread_create(&thread, NULL, partner, NULL);
    double batches[Batches];
    for (int b = 0; b < Batches; b++) {
        double start = now_ns();
        for (int i = b * Trips; i < (b + 1) * Trips; i++) {
            atomic_store_explicit(&ball, 2 * i + 1, memory_order_release);
            while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 2) {}
        }
        batches[b] = (now_ns() - start) / Trips;
    }
    pthread_join(thread, NULL);
    qsort(batches, Batches, sizeof batches[0], by_value);
    printf("%.1f\n", batches[Batches / 2]);
    return 0;
}
