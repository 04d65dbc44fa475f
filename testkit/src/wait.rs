//! Waiting on a condition, with a deadline that names what was waited for.

use std::time::{Duration, Instant};

use crate::Error;

/// Generous: 2 shared cores, several processes fsyncing.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` every `every` until it gives `Some`, for at most `limit`.
pub fn until<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: limit,
            });
        }
        std::thread::sleep(every);
    }
}

/// Polls `check` every 10 ms until it holds or `limit` has passed (it is asked once more at
/// the deadline); whether it held.
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    until("a condition", limit, Duration::from_millis(10), || {
        check().then_some(())
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_value_once_the_condition_holds() {
        let mut n = 0;
        let v = until("n to reach 3", DEADLINE, Duration::from_millis(1), || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v.expect("reached"), 3);
    }

    #[test]
    fn within_says_whether_the_condition_held() {
        let started = Instant::now();
        assert!(within(DEADLINE, || started.elapsed() > Duration::from_millis(30)));
        assert!(!within(Duration::from_millis(50), || false));
    }

    #[test]
    fn times_out_with_a_message_naming_what_it_waited_for() {
        let started = Instant::now();
        let e = until(
            "the moon to turn blue",
            Duration::from_millis(100),
            Duration::from_millis(10),
            || None::<()>,
        )
        .expect_err("never true");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            e.to_string(),
            "timed out after 100ms waiting for the moon to turn blue"
        );
    }
}
