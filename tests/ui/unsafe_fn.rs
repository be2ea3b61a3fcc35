use mp_runtime::process_fn;

#[process_fn]
unsafe fn read_at(address: usize) -> u8 {
    // SAFETY: the caller promises `address` points at a readable byte.
    unsafe { *(address as *const u8) }
}

fn main() {}
