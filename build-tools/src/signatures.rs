//! The signatures a cell's source declares, read with `syn`: what a dependency upgrade's renames are
//! checked against.
//!
//! A dependency upgrade renames every symbol of the cells compiled against the new releases, so
//! the loader cannot check a host's handle by exact name any more (the mangled hash was the free
//! ABI check). The build has both versions' sources at hand: a function keeps its ABI when both
//! declare the same signature and every type in it is a `core`/`alloc`/`std` type, which the
//! dependency bump cannot have changed (the toolchain is pinned). A cell's own types and the
//! bumped crates' types may have changed layout with the new release, so a signature that names
//! one is not vouched for. A static keeps its state when both declare the same type (the loader
//! still checks its size and alignment).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use quote::ToTokens;
use syn::visit::Visit;

/// One item of a crate that a mangled symbol can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// The signature (`fn put(key: &str, value: &[u8]) -> Result<u32, String>`) or, for a static,
    /// its type, as tokens.
    pub signature: String,
    /// `Ok` when every type in a function's signature is a `core`/`alloc`/`std` type; otherwise
    /// the first one that is not. Always `Ok` for statics (their type text is compared instead).
    pub portable: Result<(), String>,
}

/// The functions, methods (`Type::method`) and statics of the crate whose `lib.rs` is `lib`, by
/// path within the crate (`put`, `Store::len`, `STORE`), following `mod` declarations into their
/// files. Items a macro generates are not seen.
pub fn declared_items(lib: &Path) -> Result<BTreeMap<String, Declared>> {
    let mut items = BTreeMap::new();
    let dir = lib.parent().map(Path::to_path_buf).unwrap_or_default();
    read_file(lib, &dir, "", &mut items)?;
    Ok(items)
}

fn read_file(
    file: &Path,
    dir: &Path,
    prefix: &str,
    items: &mut BTreeMap<String, Declared>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed =
        syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
    read_items(&parsed.items, dir, prefix, items)
}

fn read_items(
    list: &[syn::Item],
    dir: &Path,
    prefix: &str,
    items: &mut BTreeMap<String, Declared>,
) -> Result<()> {
    for item in list {
        match item {
            syn::Item::Fn(f) => {
                items.insert(format!("{prefix}{}", f.sig.ident), function(&f.sig));
            }
            syn::Item::Static(s) => {
                items.insert(
                    format!("{prefix}{}", s.ident),
                    Declared {
                        signature: s.ty.to_token_stream().to_string(),
                        portable: Ok(()),
                    },
                );
            }
            syn::Item::Impl(i) if i.trait_.is_none() => {
                let syn::Type::Path(ty) = &*i.self_ty else {
                    continue;
                };
                let Some(last) = ty.path.segments.last() else {
                    continue;
                };
                for member in &i.items {
                    if let syn::ImplItem::Fn(f) = member {
                        items.insert(
                            format!("{prefix}{}::{}", last.ident, f.sig.ident),
                            function(&f.sig),
                        );
                    }
                }
            }
            syn::Item::Mod(m) => {
                let name = m.ident.to_string();
                let inner = format!("{prefix}{name}::");
                let sub = dir.join(&name);
                match &m.content {
                    Some((_, list)) => read_items(list, &sub, &inner, items)?,
                    None => {
                        let file = module_file(dir, &name);
                        read_file(&file, &sub, &inner, items)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `dir/name.rs`, or `dir/name/mod.rs` when only that exists.
fn module_file(dir: &Path, name: &str) -> PathBuf {
    let flat = dir.join(format!("{name}.rs"));
    if flat.is_file() {
        return flat;
    }
    dir.join(name).join("mod.rs")
}

fn function(sig: &syn::Signature) -> Declared {
    let mut check = Portable { first: None };
    for input in &sig.inputs {
        match input {
            syn::FnArg::Receiver(_) => {
                check.first.get_or_insert_with(|| "`self`".into());
            }
            syn::FnArg::Typed(t) => check.visit_type(&t.ty),
        }
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        check.visit_type(ty);
    }
    if !sig.generics.params.is_empty() {
        check
            .first
            .get_or_insert_with(|| "generic parameters".into());
    }
    Declared {
        signature: sig.to_token_stream().to_string(),
        portable: match check.first {
            None => Ok(()),
            Some(t) => Err(t),
        },
    }
}

/// The types a signature may name and keep its ABI across a dependency bump.
const PORTABLE: &[&str] = &[
    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32",
    "f64", "bool", "char", "str", "String", "Vec", "Option", "Result", "Box", "Arc", "Rc", "Cow",
    "BTreeMap", "BTreeSet", "VecDeque", "Duration", "Fn", "FnMut", "FnOnce", "Send", "Sync",
];
/// The paths those types may be written with.
const PORTABLE_ROOTS: &[&str] = &[
    "core",
    "alloc",
    "std",
    "string",
    "vec",
    "option",
    "result",
    "boxed",
    "sync",
    "rc",
    "borrow",
    "collections",
    "time",
];

/// Finds the first type in a signature that is not a `core`/`alloc`/`std` type.
struct Portable {
    first: Option<String>,
}

impl<'ast> Visit<'ast> for Portable {
    fn visit_type_path(&mut self, ty: &'ast syn::TypePath) {
        if self.first.is_some() {
            return;
        }
        let segments: Vec<String> = ty
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let Some((last, leading)) = segments.split_last() else {
            return;
        };
        let ok = ty.qself.is_none()
            && PORTABLE.contains(&last.as_str())
            && leading.iter().all(|s| PORTABLE_ROOTS.contains(&s.as_str()));
        if !ok {
            self.first = Some(format!("`{}`", ty.to_token_stream()));
            return;
        }
        syn::visit::visit_type_path(self, ty);
    }

    fn visit_type_impl_trait(&mut self, ty: &'ast syn::TypeImplTrait) {
        self.first
            .get_or_insert_with(|| format!("`{}`", ty.to_token_stream()));
    }

    fn visit_trait_bound(&mut self, bound: &'ast syn::TraitBound) {
        let last = bound.path.segments.last().map(|s| s.ident.to_string());
        if !last.is_some_and(|l| PORTABLE.contains(&l.as_str())) {
            self.first
                .get_or_insert_with(|| format!("`{}`", bound.to_token_stream()));
            return;
        }
        syn::visit::visit_trait_bound(self, bound);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(src: &str) -> BTreeMap<String, Declared> {
        let dir =
            std::env::temp_dir().join(format!("signatures-{}-{}", std::process::id(), src.len()));
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        std::fs::write(dir.join("lib.rs"), src).unwrap();
        std::fs::write(
            dir.join("inner.rs"),
            "pub fn deep(x: u32) -> u64 { x as u64 }",
        )
        .unwrap();
        let out = declared_items(&dir.join("lib.rs")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    #[test]
    fn reads_functions_methods_statics_and_modules() {
        let found = items(
            "pub static STORE: spin::Mutex<Store> = todo!();
             pub struct Store;
             impl Store { pub fn len(&self) -> usize { 0 } }
             pub fn put(key: &str, value: &[u8]) -> Result<u32, String> { todo!() }
             pub mod inner;
             mod inline { pub fn f() {} }",
        );
        let keys: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["STORE", "Store::len", "inline::f", "inner::deep", "put"]
        );
        assert_eq!(found["put"].portable, Ok(()));
        assert_eq!(found["inner::deep"].portable, Ok(()));
        assert_eq!(found["inline::f"].portable, Ok(()));
        assert!(found["Store::len"].portable.is_err(), "a method takes self");
        assert_eq!(found["STORE"].signature, "spin :: Mutex < Store >");
    }

    #[test]
    fn own_and_third_party_types_are_not_portable() {
        let found = items(
            "pub fn a() -> Option<Vec<alloc::string::String>> { None }
             pub fn b(x: heapless::Vec<u8, 4>) {}
             pub fn c(f: &dyn Fn(&str) -> Option<usize>) {}
             pub fn d() -> Flags { todo!() }
             pub fn e() -> impl Iterator<Item = u8> { None.into_iter() }
             pub fn g<T>(t: T) {}",
        );
        assert_eq!(found["a"].portable, Ok(()));
        assert_eq!(found["c"].portable, Ok(()));
        assert_eq!(
            found["b"].portable,
            Err("`heapless :: Vec < u8 , 4 >`".into())
        );
        assert_eq!(found["d"].portable, Err("`Flags`".into()));
        assert!(found["e"].portable.is_err());
        assert!(found["g"].portable.is_err());
    }
}
