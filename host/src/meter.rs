//! One memory budget per plugin instance, shared by its linear memory and
//! the host memory it makes the host hold.
//!
//! A plugin's linear memory is capped by wasmtime's `ResourceLimiter`, but
//! that is only half of what an instance costs: wasi-nn tensors, execution
//! contexts and compute outputs live in *host* memory, copied out of the
//! guest. Without a meter, one 100 MiB guest buffer turned into 200 host
//! tensors took the host to 5.9 GiB under a 512 MiB instance cap. So both
//! halves draw from one [`MemoryBudget`]: linear memory grows against it
//! (`sandbox::state::Limiter`) and every host object a guest keeps alive is
//! charged to it when created and refunded when dropped (`nn::adapter`).
//! A leaf module: the sandbox and the wasi-nn adapter both use it.

/// The bytes one instance may make live, and how many are live now.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    cap: u64,
    linear: u64,
    host: u64,
    denied: bool,
}

impl MemoryBudget {
    /// A budget of `cap` bytes, nothing used.
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            linear: 0,
            host: 0,
            denied: false,
        }
    }

    /// The cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Host bytes charged now.
    pub fn host_bytes(&self) -> u64 {
        self.host
    }

    /// Whether any request was refused (a later trap is then "out of
    /// memory", not a generic fault).
    pub fn denied(&self) -> bool {
        self.denied
    }

    fn fits(&self, linear: u64, host: u64) -> bool {
        linear.saturating_add(host) <= self.cap
    }

    /// Linear memory wants to grow to `desired` bytes: allowed when it and
    /// the host bytes held stay within the cap.
    pub fn grow_linear(&mut self, desired: u64) -> bool {
        let ok = self.fits(desired, self.host);
        if ok {
            self.linear = self.linear.max(desired);
        } else {
            self.denied = true;
        }
        ok
    }

    /// Would `bytes` more host memory fit? (Nothing is charged.)
    pub fn would_fit(&self, bytes: u64) -> bool {
        self.fits(self.linear, self.host.saturating_add(bytes))
    }

    /// Charge `bytes` of host memory, or refuse with a message naming
    /// `what` and the numbers.
    pub fn charge(&mut self, bytes: u64, what: &str) -> Result<(), String> {
        if self.would_fit(bytes) {
            self.host += bytes;
            Ok(())
        } else {
            self.denied = true;
            Err(format!(
                "{what} of {bytes} bytes would take the instance past its memory budget of {} bytes \
                 ({} bytes of linear memory and {} bytes of host objects in use)",
                self.cap, self.linear, self.host
            ))
        }
    }

    /// Give back `bytes` charged earlier.
    pub fn refund(&mut self, bytes: u64) {
        self.host = self.host.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_host_memory_share_one_cap() {
        let mut b = MemoryBudget::new(100);
        assert!(b.grow_linear(60));
        assert!(b.charge(40, "a tensor").is_ok());
        assert!(!b.denied());
        let e = b.charge(1, "a tensor").unwrap_err();
        assert!(e.contains("budget of 100 bytes"), "{e}");
        assert!(b.denied());
        assert!(!b.grow_linear(61));
        b.refund(40);
        assert!(b.grow_linear(100));
        assert_eq!(b.host_bytes(), 0);
    }
}
