//! Work deferred to the end of a loop turn.
//!
//! A handler running on a loop thread can ask for a hook to run once when
//! the loop has finished the turn (every ready socket read, every frame
//! dispatched, the inbox drained and the dirty connections flushed), just
//! before it waits again. Hosts use it to batch: the completion queue of
//! the C ABI wakes its host once per turn instead of once per request, so
//! the host drains hundreds of requests per wake-up instead of a few.
//!
//! Off a loop thread (a host thread, a test harness) there is no turn to
//! wait for: [`at_turn_end`] runs the hook at once.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Work to run once at the end of a loop turn. See [`at_turn_end`].
pub trait TurnEnd: Send + Sync {
    /// Runs on the loop thread, once per turn that asked for it.
    fn turn_end(&self);
}

thread_local! {
    /// Whether this thread is running a loop turn.
    static IN_TURN: Cell<bool> = const { Cell::new(false) };
    /// Hooks asked for during this turn, each once.
    static HOOKS: RefCell<Vec<Arc<dyn TurnEnd>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `hook` when the current loop turn ends, once however often it is
/// asked for in that turn (hooks are told apart by address). Off a loop
/// thread, or from inside a running hook, runs it now.
pub fn at_turn_end(hook: &Arc<dyn TurnEnd>) {
    if !IN_TURN.with(Cell::get) {
        hook.turn_end();
        return;
    }
    let queued = HOOKS.with(|h| {
        let Ok(mut h) = h.try_borrow_mut() else {
            return false;
        };
        if !h.iter().any(|x| Arc::ptr_eq(x, hook)) {
            h.push(Arc::clone(hook));
        }
        true
    });
    if !queued {
        hook.turn_end();
    }
}

/// Marks this thread as running loop turns (set by the loop at start).
pub(crate) fn enter() {
    IN_TURN.with(|t| t.set(true));
}

/// Runs the hooks of the turn that just ended. A hook that panics is
/// logged; the others still run. Hooks asked for while they run (from
/// inside one) run at once.
pub(crate) fn finish() {
    // Most turns ask for nothing: leave the list (and its allocation) be.
    if HOOKS.with(|h| h.borrow().is_empty()) {
        return;
    }
    let hooks = HOOKS.with(|h| std::mem::take(&mut *h.borrow_mut()));
    IN_TURN.with(|t| t.set(false));
    for hook in &hooks {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.turn_end()));
        if r.is_err() {
            log::error!("switchyard: a turn-end hook panicked");
        }
    }
    IN_TURN.with(|t| t.set(true));
    // Give the (now empty) vector back so its allocation is reused.
    HOOKS.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_empty() {
            let mut hooks = hooks;
            hooks.clear();
            *h = hooks;
        }
    });
}

/// Runs what is left and marks this thread as no longer running turns
/// (the loop is exiting).
pub(crate) fn leave() {
    finish();
    IN_TURN.with(|t| t.set(false));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl TurnEnd for Count {
        fn turn_end(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Arc<dyn TurnEnd>) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let d: Arc<dyn TurnEnd> = c.clone();
        (c, d)
    }

    #[test]
    fn off_a_loop_thread_the_hook_runs_at_once() {
        let (c, hook) = counter();
        at_turn_end(&hook);
        assert_eq!(c.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn in_a_turn_the_hook_waits_for_its_end_and_runs_once() {
        std::thread::spawn(|| {
            let (a, ha) = counter();
            let (b, hb) = counter();
            enter();
            for _ in 0..5 {
                at_turn_end(&ha);
            }
            at_turn_end(&hb);
            assert_eq!(a.0.load(Ordering::Relaxed), 0);
            finish();
            assert_eq!(a.0.load(Ordering::Relaxed), 1);
            assert_eq!(b.0.load(Ordering::Relaxed), 1);
            // The next turn starts empty.
            finish();
            assert_eq!(a.0.load(Ordering::Relaxed), 1);
            at_turn_end(&ha);
            leave();
            assert_eq!(a.0.load(Ordering::Relaxed), 2);
            // After leave, hooks run at once again.
            at_turn_end(&ha);
            assert_eq!(a.0.load(Ordering::Relaxed), 3);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_panicking_hook_does_not_stop_the_others() {
        struct Boom;
        impl TurnEnd for Boom {
            fn turn_end(&self) {
                panic!("boom");
            }
        }
        std::thread::spawn(|| {
            let (c, hook) = counter();
            let boom: Arc<dyn TurnEnd> = Arc::new(Boom);
            enter();
            at_turn_end(&boom);
            at_turn_end(&hook);
            finish();
            assert_eq!(c.0.load(Ordering::Relaxed), 1);
            leave();
        })
        .join()
        .unwrap();
    }
}
