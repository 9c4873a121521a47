//! Mixed precision: autocast with a chosen reduced dtype on CPU or CUDA.
//!
//! tch's `autocast` switches CUDA autocast on with libtorch's default dtype (fp16) and does nothing
//! on CPU; bf16 needs `at::autocast::set_autocast_dtype`, reached through a small C++ shim
//! (csrc/autocast.cpp, compiled by build.rs against the same libtorch).
use tch::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduced {
    F16,
    Bf16,
}

#[cfg(not(rsim_no_autocast_shim))]
extern "C" {
    fn rsim_autocast_enter(cuda: i32, bf16: i32) -> i32;
    fn rsim_autocast_exit(cuda: i32, prev: i32);
}

/// Whether this build can set autocast's dtype (false when libtorch's headers were missing at build).
pub const fn available() -> bool {
    cfg!(not(rsim_no_autocast_shim))
}

/// Runs `f` with autocast on `device`'s type in `dtype`, restoring the previous state afterwards
/// (also when nested). Ops on other device types are unaffected.
pub fn with_autocast<T>(device: Device, dtype: Reduced, f: impl FnOnce() -> T) -> Result<T, String> {
    #[cfg(rsim_no_autocast_shim)]
    {
        let _ = (device, dtype, f);
        Err("this rsim was built without libtorch's headers, so it cannot select the autocast dtype (bf16)".into())
    }
    #[cfg(not(rsim_no_autocast_shim))]
    {
        let cuda = i32::from(device.is_cuda());
        // SAFETY: plain calls into libtorch's thread-local autocast state with valid enum values.
        let prev = unsafe { rsim_autocast_enter(cuda, i32::from(dtype == Reduced::Bf16)) };
        // Restore the state even if `f` panics, so a caught panic leaves autocast as it was.
        struct Exit(i32, i32);
        impl Drop for Exit {
            fn drop(&mut self) {
                // SAFETY: pairs with the enter call above on this thread.
                unsafe { rsim_autocast_exit(self.0, self.1) }
            }
        }
        let _exit = Exit(cuda, prev);
        Ok(f())
    }
}
