//! A platform that is another platform with a few behaviours changed: [`Overlay`] of a platform
//! and a [`Layer`] that states only what it changes.
//!
//! Test and fuzz platforms are the hosted platform with one thing different (memory calls that
//! fail on request, code that never runs, symbols nobody defines resolved to a dummy). Written as
//! wrappers, each forwarded every method of the five platform traits by hand, and a forwarder
//! that missed a method with a default (`replace_template`, `threads_inside`, `debuggers`, ...)
//! silently got the default instead of the inner platform's answer. Here every method of the
//! platform traits is listed once: [`Layer`] has each with a default that asks the inner
//! platform, and [`Overlay`] implements the traits by asking its layer. A layer overrides the
//! methods it changes and nothing else:
//!
//! ```
//! use loader::hosted::Hosted;
//! use loader::overlay::{Layer, Overlay};
//! use loader::platform::{Memory, Platform, Process};
//!
//! /// Never runs a cell's code; everything else as the platform underneath.
//! struct NoCode;
//!
//! impl<P: Platform> Layer<P> for NoCode {
//!     fn runs_code(&self, _inner: &P) -> bool {
//!         false
//!     }
//! }
//!
//! let platform = Overlay::new(Hosted::new().unwrap(), NoCode);
//! assert!(!platform.runs_code());
//! assert_eq!(platform.page_size(), platform.inner().page_size());
//! ```
//!
//! A method added to a platform trait gets its line here too, in [`Layer`] and in the trait's
//! `impl` for [`Overlay`]; the real platforms (hosted, bare metal, the inspection tools' dry
//! run) implement the traits directly and do not change.

use alloc::string::String;
use alloc::vec::Vec;

use crate::platform::{
    Debuggers, GateHooks, InitArgs, Inside, Memory, Platform, PlatformError, Process, Protection,
    SymbolSource, TextRange, ThreadLocals, TlsSymbol, TlsTemplate, Unwinder,
};

/// The platform `inner` with the behaviours `layer` changes.
pub struct Overlay<P, L> {
    inner: P,
    layer: L,
}

impl<P: Platform, L: Layer<P>> Overlay<P, L> {
    /// `inner`, changed by `layer`.
    pub fn new(inner: P, layer: L) -> Overlay<P, L> {
        Overlay { inner, layer }
    }

    /// The platform underneath.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The layer (for its own state, such as a failure to inject).
    pub fn layer(&self) -> &L {
        &self.layer
    }
}

/// What an [`Overlay`] changes of the platform `P`: one method per method of the platform traits
/// (same name, same contract), each given the inner platform and, by default, asking it. Override
/// only what changes.
pub trait Layer<P: Platform> {
    // Memory

    /// [`Memory::page_size`], of `inner` by default.
    fn page_size(&self, inner: &P) -> usize {
        inner.page_size()
    }
    /// [`Memory::map`], of `inner` by default.
    fn map(&self, inner: &P, len: usize) -> Result<*mut u8, PlatformError> {
        inner.map(len)
    }
    /// [`Memory::map_for_overwrite`]: by default this layer's [`Layer::map`], zeroed (so that a
    /// layer that changes `map` changes every mapping).
    fn map_for_overwrite(&self, inner: &P, len: usize) -> Result<(*mut u8, bool), PlatformError> {
        Ok((self.map(inner, len)?, true))
    }
    /// [`Memory::protect`], of `inner` by default.
    fn protect(
        &self,
        inner: &P,
        addr: *mut u8,
        len: usize,
        prot: Protection,
    ) -> Result<(), PlatformError> {
        inner.protect(addr, len, prot)
    }
    /// [`Memory::unmap`], of `inner` by default.
    ///
    /// # Safety
    /// As [`Memory::unmap`].
    unsafe fn unmap(&self, inner: &P, addr: *mut u8, len: usize) {
        // SAFETY: the caller keeps `Memory::unmap`'s contract, which is this method's.
        unsafe { inner.unmap(addr, len) }
    }

    // SymbolSource

    /// [`SymbolSource::image_symbol`], of `inner` by default.
    fn image_symbol(&self, inner: &P, name: &str) -> Option<usize> {
        inner.image_symbol(name)
    }
    /// [`SymbolSource::image_tls_symbol`], of `inner` by default.
    fn image_tls_symbol(&self, inner: &P, name: &str) -> Option<TlsSymbol> {
        inner.image_tls_symbol(name)
    }
    /// [`SymbolSource::platform_symbol`], of `inner` by default.
    fn platform_symbol(&self, inner: &P, name: &str) -> Option<usize> {
        inner.platform_symbol(name)
    }
    /// [`SymbolSource::for_each_image_symbol`], of `inner` by default.
    fn for_each_image_symbol(&self, inner: &P, f: &mut dyn FnMut(&str)) {
        inner.for_each_image_symbol(f)
    }

    // Unwinder

    /// [`Unwinder::register`], of `inner` by default.
    ///
    /// # Safety
    /// As [`Unwinder::register`].
    unsafe fn register(&self, inner: &P, eh_frame: *const u8) -> Result<(), PlatformError> {
        // SAFETY: the caller keeps `Unwinder::register`'s contract, which is this method's.
        unsafe { inner.register(eh_frame) }
    }
    /// [`Unwinder::deregister`], of `inner` by default.
    ///
    /// # Safety
    /// As [`Unwinder::deregister`].
    unsafe fn deregister(&self, inner: &P, eh_frame: *const u8) {
        // SAFETY: the caller keeps `Unwinder::deregister`'s contract, which is this method's.
        unsafe { inner.deregister(eh_frame) }
    }

    // ThreadLocals

    /// [`ThreadLocals::create_module`], of `inner` by default.
    ///
    /// # Safety
    /// As [`ThreadLocals::create_module`].
    unsafe fn create_module(&self, inner: &P, template: TlsTemplate) -> Result<u64, PlatformError> {
        // SAFETY: the caller keeps `ThreadLocals::create_module`'s contract, which is this
        // method's.
        unsafe { inner.create_module(template) }
    }
    /// [`ThreadLocals::destroy_module`], of `inner` by default.
    ///
    /// # Safety
    /// As [`ThreadLocals::destroy_module`].
    unsafe fn destroy_module(&self, inner: &P, module: u64) {
        // SAFETY: the caller keeps `ThreadLocals::destroy_module`'s contract, which is this
        // method's.
        unsafe { inner.destroy_module(module) }
    }
    /// [`ThreadLocals::tls_get_addr`], of `inner` by default.
    fn tls_get_addr(&self, inner: &P) -> usize {
        inner.tls_get_addr()
    }
    /// [`ThreadLocals::replace_template`], of `inner` by default.
    ///
    /// # Safety
    /// As [`ThreadLocals::replace_template`].
    unsafe fn replace_template(
        &self,
        inner: &P,
        module: u64,
        template: TlsTemplate,
    ) -> Result<TlsTemplate, PlatformError> {
        // SAFETY: the caller keeps `ThreadLocals::replace_template`'s contract, which is this
        // method's.
        unsafe { inner.replace_template(module, template) }
    }
    /// [`ThreadLocals::module_blocks`], of `inner` by default.
    fn module_blocks(&self, inner: &P, module: u64) -> usize {
        inner.module_blocks(module)
    }

    // Process

    /// [`Process::init_args`], of `inner` by default.
    fn init_args(&self, inner: &P) -> InitArgs {
        inner.init_args()
    }
    /// [`Process::now_nanos`], of `inner` by default.
    fn now_nanos(&self, inner: &P) -> u64 {
        inner.now_nanos()
    }
    /// [`Process::runs_code`], of `inner` by default.
    fn runs_code(&self, inner: &P) -> bool {
        inner.runs_code()
    }
    /// [`Process::guarded`], of `inner` by default.
    fn guarded(&self, inner: &P, f: &mut dyn FnMut()) -> Result<(), String> {
        inner.guarded(f)
    }
    /// [`Process::threads_inside`], of `inner` by default.
    fn threads_inside(
        &self,
        inner: &P,
        ranges: &[TextRange],
        entries: &[u64],
        out: &mut Vec<Inside>,
    ) -> Result<(), PlatformError> {
        inner.threads_inside(ranges, entries, out)
    }
    /// [`Process::current_inside`], of `inner` by default.
    fn current_inside(&self, inner: &P, ranges: &[TextRange]) -> Option<u64> {
        inner.current_inside(ranges)
    }
    /// [`Process::pause`], of `inner` by default.
    fn pause(&self, inner: &P) {
        inner.pause()
    }
    /// [`Process::gate_hooks`], of `inner` by default.
    fn gate_hooks(&self, inner: &P) -> GateHooks {
        inner.gate_hooks()
    }
    /// [`Process::debuggers`], of `inner` by default.
    fn debuggers<'a>(&'a self, inner: &'a P) -> Option<&'a dyn Debuggers> {
        inner.debuggers()
    }
}

impl<P: Platform, L: Layer<P>> Memory for Overlay<P, L> {
    fn page_size(&self) -> usize {
        self.layer.page_size(&self.inner)
    }
    fn map(&self, len: usize) -> Result<*mut u8, PlatformError> {
        self.layer.map(&self.inner, len)
    }
    fn map_for_overwrite(&self, len: usize) -> Result<(*mut u8, bool), PlatformError> {
        self.layer.map_for_overwrite(&self.inner, len)
    }
    fn protect(&self, addr: *mut u8, len: usize, prot: Protection) -> Result<(), PlatformError> {
        self.layer.protect(&self.inner, addr, len, prot)
    }
    unsafe fn unmap(&self, addr: *mut u8, len: usize) {
        // SAFETY: the caller keeps `Memory::unmap`'s contract, which is the layer's.
        unsafe { self.layer.unmap(&self.inner, addr, len) }
    }
}

impl<P: Platform, L: Layer<P>> SymbolSource for Overlay<P, L> {
    fn image_symbol(&self, name: &str) -> Option<usize> {
        self.layer.image_symbol(&self.inner, name)
    }
    fn image_tls_symbol(&self, name: &str) -> Option<TlsSymbol> {
        self.layer.image_tls_symbol(&self.inner, name)
    }
    fn platform_symbol(&self, name: &str) -> Option<usize> {
        self.layer.platform_symbol(&self.inner, name)
    }
    fn for_each_image_symbol(&self, f: &mut dyn FnMut(&str)) {
        self.layer.for_each_image_symbol(&self.inner, f)
    }
}

impl<P: Platform, L: Layer<P>> Unwinder for Overlay<P, L> {
    unsafe fn register(&self, eh_frame: *const u8) -> Result<(), PlatformError> {
        // SAFETY: the caller keeps `Unwinder::register`'s contract, which is the layer's.
        unsafe { self.layer.register(&self.inner, eh_frame) }
    }
    unsafe fn deregister(&self, eh_frame: *const u8) {
        // SAFETY: the caller keeps `Unwinder::deregister`'s contract, which is the layer's.
        unsafe { self.layer.deregister(&self.inner, eh_frame) }
    }
}

impl<P: Platform, L: Layer<P>> ThreadLocals for Overlay<P, L> {
    unsafe fn create_module(&self, template: TlsTemplate) -> Result<u64, PlatformError> {
        // SAFETY: the caller keeps `ThreadLocals::create_module`'s contract, which is the
        // layer's.
        unsafe { self.layer.create_module(&self.inner, template) }
    }
    unsafe fn destroy_module(&self, module: u64) {
        // SAFETY: the caller keeps `ThreadLocals::destroy_module`'s contract, which is the
        // layer's.
        unsafe { self.layer.destroy_module(&self.inner, module) }
    }
    fn tls_get_addr(&self) -> usize {
        self.layer.tls_get_addr(&self.inner)
    }
    unsafe fn replace_template(
        &self,
        module: u64,
        template: TlsTemplate,
    ) -> Result<TlsTemplate, PlatformError> {
        // SAFETY: the caller keeps `ThreadLocals::replace_template`'s contract, which is the
        // layer's.
        unsafe { self.layer.replace_template(&self.inner, module, template) }
    }
    fn module_blocks(&self, module: u64) -> usize {
        self.layer.module_blocks(&self.inner, module)
    }
}

impl<P: Platform, L: Layer<P>> Process for Overlay<P, L> {
    fn init_args(&self) -> InitArgs {
        self.layer.init_args(&self.inner)
    }
    fn now_nanos(&self) -> u64 {
        self.layer.now_nanos(&self.inner)
    }
    fn runs_code(&self) -> bool {
        self.layer.runs_code(&self.inner)
    }
    fn guarded(&self, f: &mut dyn FnMut()) -> Result<(), String> {
        self.layer.guarded(&self.inner, f)
    }
    fn threads_inside(
        &self,
        ranges: &[TextRange],
        entries: &[u64],
        out: &mut Vec<Inside>,
    ) -> Result<(), PlatformError> {
        self.layer.threads_inside(&self.inner, ranges, entries, out)
    }
    fn current_inside(&self, ranges: &[TextRange]) -> Option<u64> {
        self.layer.current_inside(&self.inner, ranges)
    }
    fn pause(&self) {
        self.layer.pause(&self.inner)
    }
    fn gate_hooks(&self) -> GateHooks {
        self.layer.gate_hooks(&self.inner)
    }
    fn debuggers(&self) -> Option<&dyn Debuggers> {
        self.layer.debuggers(&self.inner)
    }
}
