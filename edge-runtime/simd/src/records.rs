//! Fixed-size records written once into a caller's byte buffer and read back as a typed slice: how
//! rsim-edge keeps its decoded ops (`PreparedOp`) in the arena without a heap.

use core::mem::{size_of, MaybeUninit};

/// Writes `count` records produced by `make(i)` (in order, `i = 0 .. count`) at the start of `bytes`
/// and returns them as a slice borrowing `bytes`. `None` (nothing written) when `bytes` does not start
/// aligned for `T` or is shorter than `count` records; `Some(Err(e))` with `make`'s first error (the
/// records before it stay written; `T: Copy`, so none needs dropping).
///
/// Sound for any input: the slice is created only after the alignment and size checks and after
/// every one of its records was written; it keeps `bytes` exclusively borrowed for as long as it
/// lives. What `T`'s padding bytes (if any) hold in `bytes` afterwards is unspecified: a caller that
/// reads the same memory as bytes again once the records are gone must overwrite it first (rsim-edge
/// does: an arena is written before it is read).
pub fn write_records<'b, T: Copy, E>(
    bytes: &'b mut [u8],
    count: usize,
    mut make: impl FnMut(usize) -> Result<T, E>,
) -> Option<Result<&'b [T], E>> {
    let need = count.checked_mul(size_of::<T>())?;
    if !bytes.as_ptr().cast::<T>().is_aligned() || bytes.len() < need {
        return None;
    }
    // SAFETY: the pointer is aligned for `T` and `count` records fit in `bytes` (checked above);
    // `MaybeUninit` has no validity requirement; the exclusive borrow of `bytes` moves here.
    let recs: &'b mut [MaybeUninit<T>] =
        unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<MaybeUninit<T>>(), count) };
    for (i, r) in recs.iter_mut().enumerate() {
        match make(i) {
            Ok(p) => {
                r.write(p);
            }
            Err(e) => return Some(Err(e)),
        }
    }
    // SAFETY: every one of the `count` records was written just above; `MaybeUninit<T>` has `T`'s layout.
    Some(Ok(unsafe { core::slice::from_raw_parts(recs.as_ptr().cast::<T>(), count) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(8))]
    struct Buf([u8; 64]);

    #[test]
    fn writes_and_returns_every_record() {
        let mut buf = Buf([0; 64]);
        let recs = write_records(&mut buf.0, 4, |i| Ok::<_, ()>((i as u32, i as u64 * 10))).unwrap().unwrap();
        assert_eq!(recs, &[(0, 0), (1, 10), (2, 20), (3, 30)]);
    }

    #[test]
    fn misaligned_short_and_overflowing_requests_write_nothing() {
        let mut buf = Buf([7; 64]);
        assert!(write_records(&mut buf.0[1..], 1, |_| Ok::<u64, ()>(1)).is_none());
        assert!(write_records(&mut buf.0, 9, |_| Ok::<u64, ()>(1)).is_none());
        assert!(write_records(&mut buf.0, usize::MAX, |_| Ok::<u64, ()>(1)).is_none());
        assert_eq!(buf.0, [7; 64]);
    }

    #[test]
    fn the_first_error_stops_writing() {
        let mut buf = Buf([0; 64]);
        let mut calls = 0;
        let r = write_records(&mut buf.0, 8, |i| {
            calls += 1;
            if i == 2 {
                Err("third")
            } else {
                Ok(i as u64)
            }
        });
        assert_eq!(r, Some(Err("third")));
        assert_eq!(calls, 3);
    }

    #[test]
    fn zero_records_and_zero_sized_records() {
        let mut buf = Buf([0; 64]);
        assert_eq!(write_records(&mut buf.0, 0, |_| Ok::<u64, ()>(1)), Some(Ok(&[][..])));
        assert_eq!(write_records(&mut buf.0, 3, |_| Ok::<(), ()>(())).unwrap().unwrap().len(), 3);
    }
}
