//! Prints one line per step of one seed: `cargo run -p tribune-chaos --example trace SEED STEPS`.
fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let steps: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut w = tribune_chaos::sim::World::new(seed, Default::default());
    w.trace = true;
    for _ in 0..steps {
        let r = w.step();
        for l in w.log.drain(..) {
            println!("  {l}");
        }
        println!("{}", w.describe());
        if let Err(v) = r {
            println!("VIOLATION: {v}");
            break;
        }
    }
}
