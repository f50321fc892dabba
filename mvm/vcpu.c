/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vcpu.c — vCPU threads: run the workload step by step, park on pause.
 *
 * A step is the unit of guest progress and the only place guest RAM is
 * written: pick a frame, read its generation from its header, write the next
 * generation's content. Pause takes effect between steps (the microVM's
 * instruction boundary). A vCPU paces itself to its share of the workload's
 * rate and, after being starved of CPU, does not catch up in a burst.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "mvm/runtime.h"

#define PACE_MAX_SLEEP_NS (20 * NSEC_PER_MSEC)
#define DUTY_SLICE_NS (1 * NSEC_PER_MSEC)

/* Wait on m->cond until woken or until abs (0 = no timeout). Under m->lock. */
static void cond_wait_until(struct mvm *m, uint64_t abs)
{
	if (abs) {
		struct timespec ts = ns_to_ts(abs);
		pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	} else {
		pthread_cond_wait(&m->cond, &m->lock);
	}
}

static bool stop_requested(struct mvm *m)
{
	return atomic_load_explicit(&m->pause_req, memory_order_acquire) ||
	       atomic_load_explicit(&m->quit, memory_order_relaxed);
}

/* Park at a step boundary until unpaused; the mutex orders our RAM writes
 * before the control thread's reads. */
void mvm_park(struct mvm *m)
{
	pthread_mutex_lock(&m->lock);
	m->parked++;
	pthread_cond_broadcast(&m->parked_cv);
	while (atomic_load(&m->pause_req) && !atomic_load(&m->quit))
		pthread_cond_wait(&m->cond, &m->lock);
	m->parked--;
	if (!m->parked && m->gap_start) {
		/* The last writer runs again: the guest's pause ends here. */
		atomic_store(&m->last_gap, mono_ns() - m->gap_start);
		m->gap_start = 0;
	}
	pthread_mutex_unlock(&m->lock);
}

/* Sleep until abs (0 = until woken), but return early on pause or quit. */
static void nap(struct mvm *m, uint64_t abs)
{
	pthread_mutex_lock(&m->lock);
	if (!stop_requested(m))
		cond_wait_until(m, abs);
	pthread_mutex_unlock(&m->lock);
}

static void step(struct mvm_vcpu *v)
{
	struct mvm *m = v->m;
	struct mvm_vcpu_regs *r = &v->regs;
	uint64_t f = wl_pick(&m->cfg.wl, r->seed, v->lo, v->hi, r->step), now;
	char *page;

	if (f >= m->nr_frames) { /* cannot happen below the step limit; never write wild */
		log_error("%s: vCPU %u: step %" PRIu64 " picked no frame; halting it", m->name,
			  v->id, r->step);
		__atomic_store_n(&v->limit, r->step, __ATOMIC_RELAXED);
		return;
	}
	page = m->ram + f * m->page_size;
	wl_page_fill(page, m->page_size, r->seed, f, wl_page_gen(page, f) + 1);
	__atomic_store_n(&r->step, r->step + 1, __ATOMIC_RELAXED);
	now = mvm_guest_ns(m);
	if (r->last_step_ns && now > r->last_step_ns && now - r->last_step_ns > r->max_gap_ns)
		__atomic_store_n(&r->max_gap_ns, now - r->last_step_ns, __ATOMIC_RELAXED);
	if (v->resumed && r->last_step_ns && now > r->last_step_ns)
		__atomic_store_n(&r->resume_gap_ns, now - r->last_step_ns, __ATOMIC_RELAXED);
	v->resumed = false;
	r->last_step_ns = now;
}

/*
 * The kicker bumps kicks, then looks for nappers; a napper counts itself,
 * then looks at kicks (both sequentially consistent). So either the kicker
 * sees the napper and wakes it under the lock, or the napper sees the kick
 * and does not sleep: no wake-up is lost, and a busy guest costs the
 * kicker no lock and no system call.
 */
void mvm_kick_vcpus(struct mvm *m)
{
	atomic_fetch_add(&m->kicks, 1);
	if (atomic_load(&m->nappers)) {
		pthread_mutex_lock(&m->lock);
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
	}
}

/* Sleep until kicks moves past seen, abs, pause or quit. */
static void nap_for_work(struct mvm *m, uint64_t seen, uint64_t abs)
{
	pthread_mutex_lock(&m->lock);
	atomic_fetch_add(&m->nappers, 1);
	while (atomic_load(&m->kicks) == seen && !stop_requested(m) && mono_ns() < abs)
		cond_wait_until(m, abs);
	atomic_fetch_sub(&m->nappers, 1);
	pthread_mutex_unlock(&m->lock);
}

/* A kvstore vCPU: serve requests as they come, nap when there are none. */
static void serve(struct mvm_vcpu *v)
{
	struct mvm *m = v->m;
	uint64_t now, seen = atomic_load(&m->kicks);

	if (!nic_serve_step(m->nic, &m->kv)) {
		nap_for_work(m, seen, mono_ns() + 100 * NSEC_PER_MSEC);
		return;
	}
	__atomic_store_n(&v->regs.step, v->regs.step + 1, __ATOMIC_RELAXED);
	now = mvm_guest_ns(m);
	if (v->resumed && v->regs.last_step_ns && now > v->regs.last_step_ns)
		__atomic_store_n(&v->regs.resume_gap_ns, now - v->regs.last_step_ns,
				 __ATOMIC_RELAXED);
	v->resumed = false;
	v->regs.last_step_ns = now;
}

static void *vcpu_main(void *arg)
{
	struct mvm_vcpu *v = arg;
	struct mvm *m = v->m;
	uint64_t base_t = 0, base_step = 0, busy_t = 0;
	unsigned thr_seen = ~0u;
	bool reset = true;

	/*
	 * A vCPU is a batch thread: it takes the CPU it is given but does not
	 * preempt others when it wakes. A guest resumed at the end of a
	 * migration otherwise took the CPU from the daemon thread that was to
	 * say RUNNING (seen: 2-3 ms while the other CPU idled). Unprivileged;
	 * best effort. Pid 0: this thread, the only one the runtime's seccomp
	 * filter lets it reschedule.
	 */
	sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){ 0 });
	mvm_thread_started(m);

	while (!atomic_load_explicit(&m->quit, memory_order_relaxed)) {
		uint64_t now, rate;
		unsigned thr;

		if (atomic_load_explicit(&m->pause_req, memory_order_acquire)) {
			mvm_park(m);
			v->resumed = true;
			reset = true;
			continue;
		}
		if (m->nic && v->id == 0) {
			serve(v);
			continue;
		}
		if (v->regs.step >= __atomic_load_n(&v->limit, __ATOMIC_RELAXED)) {
			nap(m, 0); /* halted or idle: nothing to do until paused or quit */
			continue;
		}
		thr = atomic_load_explicit(&m->throttle, memory_order_relaxed);
		if (thr != thr_seen)
			thr_seen = thr, reset = true;
		now = mono_ns();
		if (reset) {
			base_t = busy_t = now;
			base_step = v->regs.step;
			reset = false;
		}
		rate = m->cfg.wl.rate_pages;
		if (wl_prefilling(&m->cfg.wl, v->lo, v->hi, v->regs.step)) {
			/* Every page once, unpaced; the rate counts from its end. */
			step(v);
			reset = true;
			continue;
		}
		if (rate) {
			/* Paced: this vCPU's share of the rate, less the throttle. */
			double r = (double)rate / m->nr_vcpus * (100 - thr) / 100.0;
			uint64_t done = v->regs.step - base_step;
			double allowed = (double)(now - base_t) * r / 1e9;

			if ((double)done >= allowed) {
				uint64_t due = base_t + (uint64_t)((double)(done + 1) * 1e9 / r);
				nap(m, MIN(due, now + PACE_MAX_SLEEP_NS));
				continue;
			}
			if (allowed - (double)done > r / 100 + 1) {
				/* Starved for more than 10 ms: forget the debt. */
				base_t = now;
				base_step = v->regs.step;
			}
		} else if (thr && now - busy_t >= DUTY_SLICE_NS) {
			/* Unpaced but throttled: sleep thr% of the time. */
			nap(m, now + (now - busy_t) * thr / (100 - thr));
			busy_t = mono_ns();
			continue;
		}
		step(v);
	}
	return NULL;
}

int mvm_vcpus_start(struct mvm *m)
{
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		struct mvm_vcpu *v = &m->vcpus[i];
		sigset_t all, old;
		int r;

		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old); /* signals go to the control thread */
		r = pthread_create(&v->thread, NULL, vcpu_main, v);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r) {
			log_error("%s: starting vCPU %u: %s", m->name, i, strerror(r));
			return -r;
		}
	}
	return 0;
}

void mvm_pause(struct mvm *m)
{
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->pause_req, true);
	pthread_cond_broadcast(&m->cond);
	if (m->nic)
		nic_kick(m->nic); /* the network thread may be in epoll_wait */
	while (m->parked < m->writers)
		pthread_cond_wait(&m->parked_cv, &m->lock);
	pthread_mutex_unlock(&m->lock);
	m->paused = true;
}

void mvm_thread_started(struct mvm *m)
{
	pthread_mutex_lock(&m->lock);
	m->started++;
	pthread_cond_broadcast(&m->parked_cv);
	pthread_mutex_unlock(&m->lock);
}

void mvm_wait_started(struct mvm *m)
{
	pthread_mutex_lock(&m->lock);
	while (m->started < m->writers)
		pthread_cond_wait(&m->parked_cv, &m->lock);
	pthread_mutex_unlock(&m->lock);
}

void mvm_unpause(struct mvm *m)
{
	pthread_mutex_lock(&m->lock);
	/* The last writer to leave its park ends the guest's pause; if one
	 * never left it since the last unpause, that pause goes on. */
	if (!m->gap_start)
		m->gap_start = m->pause_t0;
	m->pause_t0 = 0;
	atomic_store(&m->pause_req, false);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	m->paused = false;
}

void mvm_throttle(struct mvm *m, unsigned pct)
{
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->throttle, pct);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

unsigned mvm_halted(struct mvm *m)
{
	unsigned n = 0;

	for (unsigned i = 0; i < m->nr_vcpus; i++)
		if (__atomic_load_n(&m->vcpus[i].regs.step, __ATOMIC_RELAXED) >=
		    __atomic_load_n(&m->vcpus[i].limit, __ATOMIC_RELAXED))
			n++;
	return n;
}

uint64_t mvm_total_steps(struct mvm *m)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < m->nr_vcpus; i++)
		n += __atomic_load_n(&m->vcpus[i].regs.step, __ATOMIC_RELAXED);
	return n;
}
