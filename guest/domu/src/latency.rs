//! `latency <n>`: timer wake-up latency. n times: deadline = now + 2 ms, `SET_TIMER_OP`,
//! `SCHED_OP BLOCK` until the `TIMER` upcall arrives; the lateness is the counter value at the
//! upcall handler's entry minus the deadline. Prints the maximum and the mean, in µs.

use ferrite_abi::shared_info::virq;
use ferrite_pv::{cpu, events, hypercall, time};

const PERIOD_US: u64 = 2000;

pub fn run(n: u64) {
    if n == 0 {
        out!("latency: n=0 max=0us avg=0us");
        return;
    }
    let v = cpu::index();
    let hz = time::hz();
    let period = time::us_to_ticks(PERIOD_US);
    cpu::irq_mask();
    let (mut max, mut sum) = (0u64, 0u64);
    for i in 0..n {
        events::take(v, virq::TIMER);
        let deadline = time::now() + period;
        if let Err(e) = hypercall::set_timer(deadline) {
            out!("latency: FAIL: SET_TIMER_OP: {e}");
            return;
        }
        let stamp = loop {
            if events::take(v, virq::TIMER) != 0 {
                let s = events::stamp(v);
                if s < deadline {
                    out!(
                        "latency: FAIL: iteration {i}: timer upcall {}us before its deadline",
                        time::ticks_to_us(deadline - s)
                    );
                    return;
                }
                break s;
            }
            if time::now() > deadline + hz {
                out!("latency: FAIL: iteration {i}: no timer upcall 1 s after the deadline");
                return;
            }
            if let Err(e) = hypercall::sched_block() {
                out!("latency: FAIL: SCHED_OP BLOCK: {e}");
                return;
            }
            // The pending upcall is taken here.
            cpu::irq_unmask();
            cpu::irq_mask();
        };
        let late = stamp - deadline;
        max = max.max(late);
        sum += late;
    }
    out!(
        "latency: n={n} max={}us avg={}us",
        time::ticks_to_us(max),
        time::ticks_to_us(sum / n)
    );
}
