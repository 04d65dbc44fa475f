//! Evaluation allocates nothing: the compiled form is flat and the decision is `Copy`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations made by this thread (the test harness's own threads allocate too).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluate_does_not_allocate() {
    let src = include_str!("../../examples/policies/acme-batch.tribune");
    let policy = tribune_policy::check("p", src)
        .policies
        .pop()
        .expect("policy");
    let set = tribune_policy::PolicySet::new(vec![policy.clone()]);
    let mut f = tribune_policy::Facts::default();
    f.enclave.tenant = "acme".into();
    f.enclave.labels.insert("tier".into(), "batch".into());
    f.host.cpu = 90.0;
    f.over_limit_ms = 40_000;
    f.held_ms.insert("when#1".into(), 60_000);
    f.held_ms.insert("reclaim".into(), 60_000);
    let before = allocs();
    let mut acc = 0.0;
    for _ in 0..1000 {
        let d = policy.evaluate(&f);
        acc += d.limit[0].value.unwrap_or(0.0);
        let d = set.evaluate(&f);
        acc += d.limit[0].value.unwrap_or(0.0);
    }
    let after = allocs();
    assert_eq!(acc, 1_000_000.0);
    assert_eq!(after - before, 0, "evaluation allocated");
    // The counter does see this thread's allocations.
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(allocs() > after && v.len() == 16);
}
