//! Prints one line per step of one seed:
//! `cargo run -p tribune-chaos --example trace SEED STEPS` (`CLOCKS=1`: see `Bugs`).
fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let steps: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    // `CLOCKS=1`: controller clocks may drift past the freshness tolerance.
    let bugs = tribune_chaos::sim::Bugs {
        clocks_beyond_tolerance: std::env::var_os("CLOCKS").is_some(),
        ..Default::default()
    };
    let mut w = tribune_chaos::sim::World::new(seed, bugs);
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
