//! Shared state: [`Value`], [`Array`] and [`SharedMemory`].
//!
//! `Value` and `Array` hold plain-old-data ([`Pod`]) in anonymous shared memory with a robust
//! lock beside it; every process that holds the handle maps the same memory, so nothing is
//! copied when they are passed. `SharedMemory` is a byte region, anonymous by default or named
//! (in `/dev/shm`, owner-only) so that unrelated programs can open it.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::base::{Error, Kind, Result};
use crate::ipc::shm::{
    Held, MAX_ALIGN, SharedState, Shm, Wait, data_offset, file_len, map_fd, set_len,
};
use crate::ipc::sync::waited;
use crate::sys::memfd;
use crate::sys::mmap::{InMapping, Mapping};
use crate::sys::mutex::Monitor;
use crate::wire::codec;

/// Plain old data: types that can live in shared memory and be read by another process.
///
/// # Safety
///
/// Every pattern of `size_of::<Self>()` bytes must be a valid `Self` (so no `bool`, `char`,
/// enums or references), and `Self` must hold no pointers or handles, which mean nothing in
/// another process. Integers, floats and arrays of them qualify; so does a `#[repr(C)]` struct
/// of them. Types aligned to more than 64 bytes are refused at compile time.
///
/// # Examples
///
/// ```
/// use mp_runtime::{Pod, Value};
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// // SAFETY: two f64s: every bit pattern is a valid `Point`, and it holds no pointer.
/// unsafe impl Pod for Point {}
///
/// let origin = Value::new(Point { x: 0.0, y: 0.0 }).unwrap();
/// origin.lock().unwrap().x = 1.5;
/// assert_eq!(origin.get().unwrap(), Point { x: 1.5, y: 0.0 });
/// ```
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: every bit pattern is a valid number; no pointers.
        unsafe impl Pod for $t {}
    )* };
}

pod!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

// SAFETY: an array of Pod is Pod: its bytes are its elements' bytes.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Stops the build when a `Pod` type is aligned above what a region's layout gives it (64
/// bytes): its references would be misaligned.
struct AlignCheck<T>(PhantomData<T>);

impl<T> AlignCheck<T> {
    const OK: () = assert!(
        align_of::<T>() <= MAX_ALIGN,
        "a Pod type in a Value or an Array may be aligned to at most 64 bytes"
    );
}

#[repr(C)]
struct ValueState<T> {
    monitor: Monitor<T>,
}

// SAFETY: all-zero bytes are a valid `T` (Pod) and an unused mutex until `init`; the value is
// used only under the mutex (or by `unlocked*` callers, under their promise).
unsafe impl<T: Pod> InMapping for ValueState<T> {}

impl<T: Pod> SharedState for ValueState<T> {
    const KIND: u64 = 0x6d70_5661_0000_0000 | size_of::<T>() as u64;

    fn init(&self) -> io::Result<()> {
        self.monitor.init(false)
    }
}

/// One `T` in shared memory with a lock, Python's `multiprocessing.Value`.
///
/// [`get`](Value::get) and [`set`](Value::set) take the lock for one access;
/// [`lock`](Value::lock) holds it across several (a read-modify-write). Robust like
/// [`Lock`](crate::Lock): if a process dies holding it, the next `lock` says so.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, Value};
///
/// #[process_fn]
/// fn add_ten(counter: Value<u64>) {
///     for _ in 0..10 {
///         *counter.lock().unwrap() += 1;
///     }
/// }
///
/// let counter = Value::new(0u64).unwrap();
/// let a = spawn!(add_ten, counter.clone()).unwrap();
/// let b = spawn!(add_ten, counter.clone()).unwrap();
/// a.join().unwrap();
/// b.join().unwrap();
/// assert_eq!(counter.get().unwrap(), 20);
/// ```
pub struct Value<T: Pod> {
    shm: Arc<Shm<ValueState<T>>>,
}

/// Holds a [`Value`]'s lock; derefs to the value.
///
/// # Examples
///
/// ```
/// let hits = mp_runtime::Value::new(0u64).unwrap();
/// let mut guard = hits.lock().unwrap();
/// *guard += 1;
/// assert_eq!(*guard, 1);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    held: Held<'a, T>,
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.held.get()
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.held.fields()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}

impl<T: Pod> Value<T> {
    /// A shared value, starting as `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Value::new(1.5f64).unwrap().get().unwrap(), 1.5);
    /// ```
    pub fn new(value: T) -> Result<Self> {
        let () = AlignCheck::<T>::OK;
        let shared = Value {
            shm: Arc::new(Shm::create(c"mp-value", 0)?),
        };
        *shared.lock()? = value;
        Ok(shared)
    }

    /// Takes the lock: the one way a value is locked.
    fn take(&self, wait: Wait) -> Result<Option<ValueGuard<'_, T>>> {
        let held = self
            .shm
            .acquire(&self.shm.state().monitor, wait, "a value's lock")?;
        Ok(held.map(|held| ValueGuard { held }))
    }

    /// Takes the lock, waiting for it.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = mp_runtime::Value::new(1u32).unwrap();
    /// *v.lock().unwrap() *= 5;
    /// assert_eq!(v.get().unwrap(), 5);
    /// ```
    pub fn lock(&self) -> Result<ValueGuard<'_, T>> {
        waited(self.take(Wait::Forever))
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let v = mp_runtime::Value::new(1u8).unwrap();
    /// assert_eq!(*v.lock_timeout(Duration::from_secs(1)).unwrap(), 1);
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>> {
        waited(self.take(Wait::timeout(timeout)))
    }

    /// Takes the lock if it is free now.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = mp_runtime::Value::new(1u8).unwrap();
    /// assert!(v.try_lock().unwrap().is_some());
    /// ```
    pub fn try_lock(&self) -> Result<Option<ValueGuard<'_, T>>> {
        self.take(Wait::No)
    }

    /// Reads the value under the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Value::new(3i64).unwrap().get().unwrap(), 3);
    /// ```
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Writes the value under the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = mp_runtime::Value::new(0u16).unwrap();
    /// v.set(9).unwrap();
    /// assert_eq!(v.get().unwrap(), 9);
    /// ```
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// The value, without taking the lock: Python's `RawValue` (or `Value(lock=False)`), for a
    /// value that processes only read while this reference lives.
    ///
    /// # Safety
    ///
    /// While the reference lives, no process may write the value (through any handle), since
    /// that would be a data race.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = mp_runtime::Value::new(3u64).unwrap();
    /// // SAFETY: no other handle to the value exists.
    /// assert_eq!(unsafe { *v.unlocked() }, 3);
    /// ```
    pub unsafe fn unlocked(&self) -> &T {
        // SAFETY: this function's contract is `Monitor::unlocked`'s: the caller promises that
        // nobody writes the value while the reference lives, which only the caller can know.
        unsafe { self.shm.state().monitor.unlocked() }
    }

    /// The value for writing, without taking the lock: Python's `RawValue`.
    ///
    /// # Safety
    ///
    /// While the reference lives, no other process or handle may read or write the value.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut v = mp_runtime::Value::new(3u64).unwrap();
    /// // SAFETY: no other handle to the value exists.
    /// unsafe { *v.unlocked_mut() = 4 };
    /// assert_eq!(v.get().unwrap(), 4);
    /// ```
    pub unsafe fn unlocked_mut(&mut self) -> &mut T {
        // SAFETY: this function's contract is `Monitor::unlocked_mut`'s: the caller promises
        // that nothing else touches the value while the reference lives.
        unsafe { self.shm.state().monitor.unlocked_mut() }
    }
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            shm: self.shm.clone(),
        }
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let () = AlignCheck::<T>::OK;
        Ok(Value {
            shm: Arc::new(Shm::deserialize(deserializer)?),
        })
    }
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").finish_non_exhaustive()
    }
}

/// An array's state; its elements follow in the mapping, with the lock that guards them, as a
/// `Monitor<[T]>` from [`data_offset`] on.
#[repr(C)]
struct ArrayState<T> {
    /// Written once by the creator before the handle is shared.
    len: AtomicU64,
    element: PhantomData<fn() -> T>,
}

// SAFETY: zeros are an empty array, and `len` is atomic.
unsafe impl<T: Pod> InMapping for ArrayState<T> {}

// SAFETY: zeros are an unused mutex until `init` and valid elements (Pod: any bytes are);
// the elements are reached only with the mutex held, or under the promise of an `unlocked*`
// caller; Pod holds no pointers.
unsafe impl<T: Pod> InMapping for Monitor<[T]> {}

impl<T: Pod> SharedState for ArrayState<T> {
    const KIND: u64 = 0x6d70_4172_0000_0000 | size_of::<T>() as u64;

    /// Nothing: the lock lives with the elements, which [`Array::new`] sets up.
    fn init(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A fixed-length array of `T` in shared memory with a lock, Python's
/// `multiprocessing.Array`.
///
/// Every process that holds it maps the same memory: passing it to a pool task copies a file
/// descriptor, not the elements. [`lock`](Array::lock) gives the elements as a slice.
/// Robust like [`Lock`](crate::Lock).
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, Array, Pool};
///
/// #[process_fn]
/// fn sum_part(array: Array<f64>, start: usize, end: usize) -> f64 {
///     array.lock().unwrap()[start..end].iter().sum()
/// }
///
/// let array = Array::from_slice(&[1.0, 2.0, 3.0, 4.0]).unwrap();
/// let pool = Pool::new(2).unwrap();
/// let parts = pool.starmap(sum_part, vec![(array.clone(), 0, 2), (array.clone(), 2, 4)]).unwrap();
/// assert_eq!(parts, [3.0, 7.0]);
/// ```
pub struct Array<T: Pod> {
    shm: Arc<Shm<ArrayState<T>>>,
    /// The length, read from the mapping once, when this handle was made or received, and
    /// checked against the mapping's size then: another process that writes the length in
    /// the mapping later changes nothing here.
    len: usize,
}

/// Holds an [`Array`]'s lock; derefs to its elements.
///
/// # Examples
///
/// ```
/// let samples = mp_runtime::Array::from_slice(&[3.0f64, 1.0, 2.0]).unwrap();
/// let mut guard = samples.lock().unwrap();
/// guard.sort_by(f64::total_cmp);
/// assert_eq!(&guard[..], &[1.0, 2.0, 3.0]);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    held: Held<'a, [T]>,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.held.get()
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.held.fields()
    }
}

impl<T: Pod> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Array<T> {
    /// An array of `len` elements, all zero bits (0 for numbers).
    ///
    /// # Examples
    ///
    /// ```
    /// let array = mp_runtime::Array::<u32>::new(3).unwrap();
    /// assert_eq!(array.to_vec().unwrap(), [0, 0, 0]);
    /// ```
    pub fn new(len: usize) -> Result<Self> {
        let () = AlignCheck::<T>::OK;
        let bytes = Monitor::<[T]>::size(len).ok_or_else(|| {
            Error::new(Kind::Usage(format!(
                "an array of {len} elements is too large"
            )))
        })?;
        let shm = Shm::<ArrayState<T>>::create(c"mp-array", bytes)?;
        shm.state().len.store(len as u64, Ordering::Relaxed);
        let array = Array {
            shm: Arc::new(shm),
            len,
        };
        array
            .monitor()
            .init(false)
            .map_err(|e| Error::io("cannot set up a process-shared lock", e))?;
        Ok(array)
    }

    /// An array holding a copy of `values`.
    ///
    /// # Examples
    ///
    /// ```
    /// let array = mp_runtime::Array::from_slice(&[1u8, 2, 3]).unwrap();
    /// assert_eq!(array.len(), 3);
    /// ```
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let array = Array::new(values.len())?;
        array.lock()?.copy_from_slice(values);
        Ok(array)
    }

    /// The elements with their lock, for this handle's own length, which was checked against
    /// the mapping's size when the handle was made or received.
    fn monitor(&self) -> &Monitor<[T]> {
        Monitor::in_mapping(self.shm.mapping(), data_offset::<ArrayState<T>>(), self.len)
    }

    /// Takes the lock: the one way an array is locked.
    fn take(&self, wait: Wait) -> Result<Option<ArrayGuard<'_, T>>> {
        let held = self.shm.acquire(self.monitor(), wait, "an array's lock")?;
        Ok(held.map(|held| ArrayGuard { held }))
    }

    /// The elements, without taking the lock: Python's `RawArray` (or `Array(lock=False)`),
    /// for data that processes only read, or write in parts they have agreed on another way.
    /// Readers in several processes then run side by side.
    ///
    /// # Safety
    ///
    /// While the slice lives, no process may write these elements (through
    /// [`lock`](Array::lock), [`set`](Array::set) or [`unlocked_mut`](Array::unlocked_mut) of any
    /// handle to this array), since that would be a data race.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::{process_fn, Array, Pool};
    ///
    /// #[process_fn]
    /// fn sum_part(array: Array<u64>, start: usize, end: usize) -> u64 {
    ///     // SAFETY: the parent filled the array before the map and writes no more.
    ///     let values = unsafe { array.unlocked() };
    ///     values[start..end].iter().sum()
    /// }
    ///
    /// let array = Array::from_slice(&[1, 2, 3, 4]).unwrap();
    /// let pool = Pool::new(2).unwrap();
    /// let parts = pool.starmap(sum_part, vec![(array.clone(), 0, 2), (array.clone(), 2, 4)]);
    /// assert_eq!(parts.unwrap(), [3, 7]);
    /// ```
    pub unsafe fn unlocked(&self) -> &[T] {
        // SAFETY: this function's contract is `Monitor::unlocked`'s: the caller promises that
        // nobody writes the elements while the slice lives, which only the caller can know.
        unsafe { self.monitor().unlocked() }
    }

    /// The elements for writing, without taking the lock: Python's `RawArray`.
    ///
    /// # Safety
    ///
    /// While the slice lives, no other process or handle may read or write the elements this
    /// code writes (processes may fill disjoint parts side by side).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut array = mp_runtime::Array::<u8>::new(3).unwrap();
    /// // SAFETY: no other handle to the array exists yet.
    /// unsafe { array.unlocked_mut() }.copy_from_slice(&[7, 8, 9]);
    /// assert_eq!(array.to_vec().unwrap(), [7, 8, 9]);
    /// ```
    pub unsafe fn unlocked_mut(&mut self) -> &mut [T] {
        // SAFETY: this function's contract is `Monitor::unlocked_mut`'s: the caller promises
        // that nothing else touches what is written while the slice lives.
        unsafe { self.monitor().unlocked_mut() }
    }

    /// The number of elements.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::Array::<f32>::new(10).unwrap().len(), 10);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mp_runtime::Array::<u8>::new(0).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the lock, waiting for it; the guard derefs to the elements.
    ///
    /// # Examples
    ///
    /// ```
    /// let array = mp_runtime::Array::<u64>::new(4).unwrap();
    /// array.lock().unwrap().fill(7);
    /// assert_eq!(array.to_vec().unwrap(), [7, 7, 7, 7]);
    /// ```
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>> {
        waited(self.take(Wait::Forever))
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let array = mp_runtime::Array::<u8>::new(2).unwrap();
    /// assert_eq!(array.lock_timeout(Duration::from_secs(1)).unwrap().len(), 2);
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>> {
        waited(self.take(Wait::timeout(timeout)))
    }

    /// Takes the lock if it is free now.
    ///
    /// # Examples
    ///
    /// ```
    /// let array = mp_runtime::Array::<u8>::new(2).unwrap();
    /// assert!(array.try_lock().unwrap().is_some());
    /// ```
    pub fn try_lock(&self) -> Result<Option<ArrayGuard<'_, T>>> {
        self.take(Wait::No)
    }

    /// Reads element `index` under the lock; `None` past the end.
    ///
    /// # Examples
    ///
    /// ```
    /// let array = mp_runtime::Array::from_slice(&[5i32, 6]).unwrap();
    /// assert_eq!(array.get(1).unwrap(), Some(6));
    /// assert_eq!(array.get(2).unwrap(), None);
    /// ```
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        Ok(self.lock()?.get(index).copied())
    }

    /// Writes element `index` under the lock; an index past the end is an error.
    ///
    /// # Examples
    ///
    /// ```
    /// let array = mp_runtime::Array::<u8>::new(2).unwrap();
    /// array.set(1, 9).unwrap();
    /// assert_eq!(array.to_vec().unwrap(), [0, 9]);
    /// assert!(array.set(2, 1).unwrap_err().is_usage());
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        let mut elements = self.lock()?;
        let len = elements.len();
        let slot = elements.get_mut(index).ok_or_else(|| {
            Error::new(Kind::Usage(format!(
                "index {index} is out of bounds for an array of {len} elements"
            )))
        })?;
        *slot = value;
        Ok(())
    }

    /// A copy of the elements, taken under the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let array = mp_runtime::Array::from_slice(&[1u8, 2]).unwrap();
    /// assert_eq!(array.to_vec().unwrap(), [1, 2]);
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            shm: self.shm.clone(),
            len: self.len,
        }
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let () = AlignCheck::<T>::OK;
        let shm = Arc::new(Shm::<ArrayState<T>>::deserialize(deserializer)?);
        let len = usize::try_from(shm.state().len.load(Ordering::Relaxed))
            .map_err(|_| D::Error::custom("an array's length does not fit this process"))?;
        let data = shm.mapping().len() - data_offset::<ArrayState<T>>();
        if Monitor::<[T]>::size(len).is_none_or(|size| size > data) {
            return Err(D::Error::custom(
                "an array's shared memory is shorter than its length",
            ));
        }
        Ok(Array { shm, len })
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array").field("len", &self.len()).finish()
    }
}

/// A region of bytes shared by processes, Python's `multiprocessing.shared_memory`.
///
/// [`SharedMemory::new`] makes an anonymous region (a memfd): it exists while some process
/// holds it, and never appears in `/dev/shm`, so nothing is left behind however the
/// processes end. [`SharedMemory::create`] makes a named one, in `/dev/shm` with owner-only
/// permissions, which other programs can [`open`](SharedMemory::open); the handle that
/// created it removes the name when dropped (or call [`unlink`](SharedMemory::unlink)).
/// Either kind can be passed to other processes like any handle.
///
/// There is no lock: coordinate writers with a [`Lock`](crate::Lock), or give each process
/// its own part. [`read_at`](SharedMemory::read_at) and [`write_at`](SharedMemory::write_at)
/// are sound however other threads and processes use the region at the same time: they copy
/// through atomics, so a read that races with a write may see it in part, each byte old or
/// new, and nothing is promised beyond single bytes.
///
/// An anonymous region's size is sealed: nobody can shrink it. A named region's file can be
/// cut short by any program allowed to open it; `read_at` and `write_at` check its size
/// first and return an error rather than touch memory past its end (a bus error). A program
/// that cuts the file between that check and the copy still makes the copy die of SIGBUS:
/// share named regions only with programs you trust not to resize them.
///
/// # Examples
///
/// ```
/// use mp_runtime::{process_fn, spawn, SharedMemory};
///
/// #[process_fn]
/// fn write_hello(mut shm: SharedMemory) {
///     shm.write_at(0, b"hello").unwrap();
/// }
///
/// let shm = SharedMemory::new(16).unwrap();
/// spawn!(write_hello, shm.clone().unwrap()).unwrap().join().unwrap();
/// let mut buf = [0u8; 5];
/// shm.read_at(0, &mut buf).unwrap();
/// assert_eq!(&buf, b"hello");
/// ```
pub struct SharedMemory {
    fd: OwnedFd,
    map: Mapping,
    name: Option<String>,
    /// Whether dropping this handle removes the name.
    owner: bool,
}

fn shm_name(name: &str) -> Result<CString> {
    let name = name.trim_start_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(Error::new(Kind::Usage(format!(
            "`{name}` is not a shared memory name: use one word without `/`"
        ))));
    }
    CString::new(format!("/{name}")).map_err(|_| {
        Error::new(Kind::Usage(
            "a shared memory name cannot contain NUL".into(),
        ))
    })
}

impl SharedMemory {
    /// An anonymous region of `len` zero bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = mp_runtime::SharedMemory::new(4096).unwrap();
    /// assert_eq!(shm.len(), 4096);
    /// assert_eq!(shm.name(), None);
    /// ```
    pub fn new(len: usize) -> Result<Self> {
        let fd = memfd::create(c"mp-shared-memory")
            .map_err(|e| Error::io("cannot create shared memory (memfd_create)", e))?;
        set_len(fd.as_fd(), len)?;
        memfd::seal_size(fd.as_fd())
            .map_err(|e| Error::io("cannot seal the size of shared memory", e))?;
        Self::map(fd, len, None, false)
    }

    /// A named region of `len` zero bytes, in `/dev/shm/NAME` with owner-only permissions;
    /// fails if the name exists. Dropping this handle removes the name.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::SharedMemory;
    ///
    /// let name = format!("mp-doc-{}", std::process::id());
    /// let created = SharedMemory::create(&name, 64).unwrap();
    /// let opened = SharedMemory::open(&name).unwrap();
    /// assert_eq!(opened.len(), 64);
    /// drop(created);
    /// assert!(SharedMemory::open(&name).is_err()); // the name is gone
    /// ```
    pub fn create(name: &str, len: usize) -> Result<Self> {
        let c_name = shm_name(name)?;
        let fd = memfd::open_named(&c_name, true)
            .map_err(|e| Error::io(format!("cannot create shared memory `{name}`"), e))?;
        let made =
            set_len(fd.as_fd(), len).and_then(|()| Self::map(fd, len, Some(name.into()), true));
        if made.is_err() {
            // The region is not made: its name must not stay behind (the error says why).
            let _ = memfd::unlink_named(&c_name);
        }
        made
    }

    /// Opens a named region made by [`create`](SharedMemory::create) (here or in another
    /// program, Python's included).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mp_runtime::SharedMemory::open("mp-no-such-region").is_err());
    /// ```
    pub fn open(name: &str) -> Result<Self> {
        let c_name = shm_name(name)?;
        let fd = memfd::open_named(&c_name, false)
            .map_err(|e| Error::io(format!("cannot open shared memory `{name}`"), e))?;
        let len = file_len(fd.as_fd())?;
        Self::map(fd, len, Some(name.into()), false)
    }

    fn map(fd: OwnedFd, len: usize, name: Option<String>, owner: bool) -> Result<Self> {
        Ok(SharedMemory {
            map: map_fd(fd.as_fd(), len)?,
            fd,
            name,
            owner,
        })
    }

    /// Another handle to the same region in this process (not the owner of the name).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = mp_runtime::SharedMemory::new(8).unwrap();
    /// let mut b = a.clone().unwrap();
    /// b.write_at(0, &[1]).unwrap();
    /// let mut byte = [0];
    /// a.read_at(0, &mut byte).unwrap();
    /// assert_eq!(byte, [1]);
    /// ```
    #[allow(
        clippy::should_implement_trait,
        reason = "mapping again can fail, Clone cannot"
    )]
    pub fn clone(&self) -> Result<Self> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| Error::io("cannot duplicate a shared memory handle", e))?;
        Self::map(fd, self.len(), self.name.clone(), false)
    }

    /// The size in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::SharedMemory::new(10).unwrap().len(), 10);
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region has no bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mp_runtime::SharedMemory::new(0).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name, for a named region.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mp_runtime::SharedMemory::new(1).unwrap().name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The bytes, as a slice.
    ///
    /// # Safety
    ///
    /// No process may write to the region while the slice lives.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = mp_runtime::SharedMemory::new(3).unwrap();
    /// // SAFETY: no other process has this region.
    /// assert_eq!(unsafe { shm.as_slice() }, [0, 0, 0]);
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: this function's contract is `Mapping::as_slice`'s: the caller rules out
        // writers while the slice lives, which only the caller can know.
        unsafe { self.map.as_slice() }
    }

    /// The bytes, as a mutable slice.
    ///
    /// # Safety
    ///
    /// No other process may read or write the region while the slice lives.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut shm = mp_runtime::SharedMemory::new(3).unwrap();
    /// // SAFETY: no other process has this region.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"abc");
    /// ```
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: this function's contract is `Mapping::as_mut_slice`'s: the caller rules out
        // other processes while the slice lives, which only the caller can know.
        unsafe { self.map.as_mut_slice() }
    }

    /// Copies bytes out, starting at `offset`. Bytes another thread or process writes at the
    /// same time may be seen in part: each byte old or new. Panics if the range is outside
    /// the region; fails if a named region's file was cut short by another program (see
    /// [`SharedMemory`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = mp_runtime::SharedMemory::new(4).unwrap();
    /// let mut buf = [9u8; 2];
    /// shm.read_at(2, &mut buf).unwrap();
    /// assert_eq!(buf, [0, 0]);
    /// ```
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len(), "read")?;
        self.map.read(offset, buf);
        Ok(())
    }

    /// Copies bytes in, starting at `offset`. Panics if the range is outside the region;
    /// fails if a named region's file was cut short by another program (see
    /// [`SharedMemory`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut shm = mp_runtime::SharedMemory::new(4).unwrap();
    /// shm.write_at(1, &[5, 6]).unwrap();
    /// let mut buf = [0u8; 4];
    /// shm.read_at(0, &mut buf).unwrap();
    /// assert_eq!(buf, [0, 5, 6, 0]);
    /// ```
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.check_range(offset, bytes.len(), "write")?;
        self.map.write(offset, bytes);
        Ok(())
    }

    /// Panics on a range outside the region; for a named region, whose file anyone allowed
    /// can resize, an error if the file no longer holds the range.
    fn check_range(&self, offset: usize, len: usize, verb: &str) -> Result<()> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len());
        let end = end.unwrap_or_else(|| panic!("{verb} past the end of shared memory"));
        let Some(name) = &self.name else {
            return Ok(()); // an anonymous region is sealed
        };
        let now = file_len(self.fd.as_fd())?;
        if now < end {
            return Err(Error::io(
                format!(
                    "cannot {verb} bytes {offset}..{end} of shared memory `{name}`: another \
                     program cut its file to {now} bytes"
                ),
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        Ok(())
    }

    /// Removes the name now (the memory stays while handles to it exist). Does nothing for
    /// an anonymous region.
    ///
    /// # Examples
    ///
    /// ```
    /// use mp_runtime::SharedMemory;
    ///
    /// let name = format!("mp-doc-unlink-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 8).unwrap();
    /// shm.unlink().unwrap();
    /// assert!(SharedMemory::open(&name).is_err());
    /// assert_eq!(shm.len(), 8); // still usable
    /// ```
    pub fn unlink(&self) -> Result<()> {
        let Some(name) = &self.name else {
            return Ok(());
        };
        let c_name = shm_name(name)?;
        if let Err(e) = memfd::unlink_named(&c_name) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(Error::io(
                    format!("cannot remove shared memory `{name}`"),
                    e,
                ));
            }
        }
        Ok(())
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.owner {
            // A drop cannot return the error; the name stays in /dev/shm, as it would if the
            // process were killed.
            let _ = self.unlink();
        }
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        struct Fd<'a>(&'a OwnedFd);
        impl Serialize for Fd<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                codec::serialize_fd(self.0.as_fd(), serializer)
            }
        }
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&self.name)?;
        tuple.serialize_element(&Fd(&self.fd))?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fd(OwnedFd);
        impl<'de> Deserialize<'de> for Fd {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                codec::deserialize_fd(deserializer).map(Fd)
            }
        }
        let (name, Fd(fd)) = <(Option<String>, Fd)>::deserialize(deserializer)?;
        let len = file_len(fd.as_fd()).map_err(codec::handle_error)?;
        SharedMemory::map(fd, len, name, false).map_err(codec::handle_error)
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The length in the mapping is written by the creator, but any process holding the array
    // can write there too: a handle keeps the length it checked, so a rewritten length neither
    // reaches past the mapping nor panics.
    #[test]
    fn a_length_rewritten_in_the_mapping_changes_no_handle() {
        let array = Array::from_slice(&[1u32, 2, 3]).unwrap();
        let copy = array.clone();
        array.shm.state().len.store(1 << 40, Ordering::Relaxed);
        assert_eq!(array.len(), 3);
        assert_eq!(copy.to_vec().unwrap(), [1, 2, 3]);
        assert!(array.set(3, 4).unwrap_err().is_usage());
    }
}
