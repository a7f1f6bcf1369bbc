//! Panics turned into errors where a whole run must go on (a series of `run`)
//! or end with a message (`validate`): libtorch reports failures such as an
//! allocation it cannot make, or a TorchScript module that raises mid-chain, by
//! a panic of `tch`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `f`'s result, or an "internal error" naming the panic's message when it
/// panicked (the panic hook has printed it to stderr already).
pub fn catch_internal<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(anyhow::anyhow!("internal error: {}", panic_text(&panic))))
}

/// The message of a caught panic, without the C++ stack that libtorch's errors
/// carry after their first line ("Exception raised from …", "frame #0: …", with
/// the newline escaped when the error was debug-printed by an `unwrap`).
fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned());
    let end = [
        "\\nException raised from",
        "\\nframe #",
        "\nException raised from",
        "\nframe #",
    ]
    .iter()
    .filter_map(|marker| text.find(marker))
    .min();
    match end {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_text_drops_libtorchs_stack() {
        let torch = "called `Result::unwrap()` on an `Err` value: Torch(\"DefaultCPUAllocator: \
                     can't allocate memory: you tried to allocate 21960000000 bytes.\\nframe #0: \
                     c10::ThrowEnforceNotMet + 0x6a\\nframe #1: …\")";
        let text = panic_text(&(Box::new(torch.to_owned()) as Box<dyn Any + Send>));
        assert!(text.ends_with("21960000000 bytes."), "{text}");
        let plain: Box<dyn Any + Send> = Box::new("no stack here");
        assert_eq!(panic_text(&plain), "no stack here");
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let err = catch_internal::<()>(|| panic!("boom")).unwrap_err();
        assert_eq!(err.to_string(), "internal error: boom");
        assert_eq!(catch_internal(|| Ok(7)).unwrap(), 7);
    }
}
