//! The file-level import graph of a crate, for the tidy check that no two files of `src/`
//! depend on each other.
//!
//! A file depends on another when it names an item that the other file *defines*: a `use`
//! (groups, `self`, `super`, `crate`, globs and renames included) or a path in code
//! (`crate::a::f()`, `super::x::Y`, `Scheme::new`, a type in a signature, an `impl`
//! header). Re-exports are followed to the definition, so `super::Scheme` in
//! `erasure/codec.rs` is an edge to `erasure/layout.rs`, where `Scheme` is defined, not to
//! `erasure/mod.rs`, which only re-exports it. A `mod` declaration and every `use` in a file
//! are edges from that file too, so a `mod.rs` that re-exports its children depends on
//! them, and a child that uses an item the `mod.rs` defines closes a cycle.
//!
//! The resolver follows Rust 2018 name resolution closely enough for this crate: a path's
//! first segment is looked up in the current module (its items, modules, imports and glob
//! imports), then it walks module by module; a segment that reaches an item (a type, a
//! function) ends the walk (`Scheme::new` is `Scheme`). Names it cannot find are other
//! crates', the prelude's, or generic parameters, and make no edge. A one-segment path
//! in an expression that names a local variable or parameter of its function is not looked
//! up (a variable `store` is not the module `store`). Paths inside macro calls are seen
//! where the arguments parse as expressions (`assert_eq!`, `format!`, `vec!`).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};

/// Edges between files: from → to → the paths in `from` that make the edge.
pub type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The file-level graph of the crate whose sources are `files` (path relative to `src/` →
/// text). `lib.rs` is the library's root; `main.rs`, when present, is a binary crate that
/// names the library as `crate_name`.
pub fn file_graph(files: &BTreeMap<String, String>, crate_name: &str) -> Result<Graph, String> {
    let mut crate_ = Crate {
        files,
        crate_name: crate_name.to_string(),
        modules: Vec::new(),
        references: Vec::new(),
        lib_root: 0,
    };
    crate_.load("lib.rs", None, None)?;
    if files.contains_key("main.rs") {
        crate_.load("main.rs", None, None)?;
    }
    let mut graph = Graph::new();
    for reference in &crate_.references {
        let from = &crate_.modules[reference.module].file;
        let target = match &reference.path {
            Named::Path(path) => crate_.resolve(reference.module, path, 0),
            Named::Module(child) => Some(Target::Module(*child)),
        };
        let Some(target) = target else { continue };
        let to = crate_.file_of(target);
        if to != from {
            graph
                .entry(from.clone())
                .or_default()
                .entry(to.clone())
                .or_default()
                .insert(reference.text.clone());
        }
    }
    Ok(graph)
}

/// The strongly connected components of `graph` with more than one file, each sorted,
/// in file order.
pub fn tangles(graph: &Graph) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to.keys()))
        .collect();
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: HashSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in nodes {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    let mut found: Vec<Vec<String>> = tarjan
        .found
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|mut c| {
            c.sort();
            c
        })
        .collect();
    found.sort();
    found
}

/// The cycles through each edge of a tangle, as file chains (`a.rs → b.rs → a.rs`), each
/// the shortest one through its edge, without repeats.
pub fn cycles_in(graph: &Graph, tangle: &[String]) -> Vec<Vec<String>> {
    let members: BTreeSet<&String> = tangle.iter().collect();
    let within = |from: &String| -> Vec<&String> {
        graph
            .get(from)
            .map(|to| to.keys().filter(|t| members.contains(t)).collect())
            .unwrap_or_default()
    };
    let mut cycles = BTreeSet::new();
    for from in tangle {
        for to in within(from) {
            // Shortest path to → … → from, by breadth-first search inside the tangle.
            let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
            let mut queue = VecDeque::from([to]);
            while let Some(node) = queue.pop_front() {
                if node == from {
                    break;
                }
                for next in within(node) {
                    if next != to && !came_from.contains_key(next) {
                        came_from.insert(next, node);
                        queue.push_back(next);
                    }
                }
            }
            let mut chain = vec![from.clone()];
            let mut node = from;
            while node != to {
                node = came_from[node];
                chain.push(node.clone());
            }
            chain.reverse(); // to … from
            chain.insert(0, from.clone()); // from → to … from
            cycles.insert(rotate_to_smallest(chain));
        }
    }
    cycles.into_iter().collect()
}

/// A cycle `[a, b, …, a]` rotated to start at its smallest file, so each cycle is listed
/// once.
fn rotate_to_smallest(mut chain: Vec<String>) -> Vec<String> {
    chain.pop();
    let start = (0..chain.len()).min_by_key(|&i| &chain[i]).unwrap_or(0);
    chain.rotate_left(start);
    chain.push(chain[0].clone());
    chain
}

struct Tarjan<'g> {
    graph: &'g Graph,
    index: BTreeMap<&'g String, usize>,
    low: BTreeMap<&'g String, usize>,
    stack: Vec<&'g String>,
    on_stack: HashSet<&'g String>,
    next: usize,
    found: Vec<Vec<String>>,
}

impl<'g> Tarjan<'g> {
    fn visit(&mut self, node: &'g String) {
        self.index.insert(node, self.next);
        self.low.insert(node, self.next);
        self.next += 1;
        self.stack.push(node);
        self.on_stack.insert(node);
        for next in self.graph.get(node).into_iter().flat_map(|to| to.keys()) {
            if !self.index.contains_key(next) {
                self.visit(next);
                let low = self.low[node].min(self.low[next]);
                self.low.insert(node, low);
            } else if self.on_stack.contains(next) {
                let low = self.low[node].min(self.index[next]);
                self.low.insert(node, low);
            }
        }
        if self.low[node] == self.index[node] {
            let mut component = Vec::new();
            loop {
                let member = self.stack.pop().expect("the node itself is on the stack");
                self.on_stack.remove(member);
                component.push(member.clone());
                if member == node {
                    break;
                }
            }
            self.found.push(component);
        }
    }
}

/// One module: a file, or an inline `mod name { … }` inside one.
struct Module {
    file: String,
    parent: Option<usize>,
    /// The crate root this module belongs to (`lib.rs`'s or `main.rs`'s module).
    root: usize,
    /// Where the files of its `mod child;` declarations are: `erasure/` for `erasure/mod.rs`.
    children_dir: String,
    names: Vec<(String, Binding)>,
    globs: Vec<Vec<String>>,
}

enum Binding {
    /// An item this module defines (in its file).
    Item,
    Module(usize),
    /// A `use`, as written (first segment relative to this module).
    Import(Vec<String>),
}

#[derive(Clone, Copy)]
enum Target {
    /// An item defined in this module.
    Item(usize),
    Module(usize),
}

enum Named {
    Path(Vec<String>),
    Module(usize),
}

/// A name used in a module, to be resolved once every module is known.
struct Reference {
    module: usize,
    path: Named,
    /// As the report shows it.
    text: String,
}

struct Crate<'f> {
    files: &'f BTreeMap<String, String>,
    crate_name: String,
    modules: Vec<Module>,
    references: Vec<Reference>,
    lib_root: usize,
}

impl Crate<'_> {
    /// Parses `file` as module `parent::…` (or a crate root) and every file it declares.
    fn load(
        &mut self,
        file: &str,
        parent: Option<usize>,
        name: Option<&str>,
    ) -> Result<usize, String> {
        let text = self
            .files
            .get(file)
            .ok_or_else(|| format!("module file {file} not found"))?;
        let syntax = syn::parse_file(text).map_err(|e| format!("{file}: {e}"))?;
        let id = self.modules.len();
        let children_dir = match file.strip_suffix(".rs") {
            _ if parent.is_none() || file.ends_with("mod.rs") => dir_of(file),
            Some(stem) => format!("{stem}/"),
            None => return Err(format!("{file} is not a .rs file")),
        };
        let root = parent.map_or(id, |p| self.modules[p].root);
        if file == "lib.rs" {
            self.lib_root = id;
        }
        self.modules.push(Module {
            file: file.to_string(),
            parent,
            root,
            children_dir,
            names: Vec::new(),
            globs: Vec::new(),
        });
        if let (Some(parent), Some(name)) = (parent, name) {
            self.modules[parent]
                .names
                .push((name.to_string(), Binding::Module(id)));
        }
        self.index_items(&syntax.items, id, true)?;
        Ok(id)
    }

    /// Records the names `items` define in `module`, loads the modules they declare, and
    /// (when `with_references`) the paths they use.
    fn index_items(
        &mut self,
        items: &[syn::Item],
        module: usize,
        with_references: bool,
    ) -> Result<(), String> {
        for item in items {
            let defined = match item {
                syn::Item::Mod(m) => {
                    self.index_module(m, module)?;
                    continue;
                }
                syn::Item::Use(u) => {
                    let mut prefix = Vec::new();
                    self.index_use(&u.tree, module, &mut prefix, u.leading_colon.is_some());
                    continue;
                }
                syn::Item::Const(i) => Some(&i.ident),
                syn::Item::Enum(i) => Some(&i.ident),
                syn::Item::Fn(i) => Some(&i.sig.ident),
                syn::Item::Macro(i) => i.ident.as_ref(),
                syn::Item::Static(i) => Some(&i.ident),
                syn::Item::Struct(i) => Some(&i.ident),
                syn::Item::Trait(i) => Some(&i.ident),
                syn::Item::TraitAlias(i) => Some(&i.ident),
                syn::Item::Type(i) => Some(&i.ident),
                syn::Item::Union(i) => Some(&i.ident),
                _ => None,
            };
            if let Some(ident) = defined {
                self.modules[module]
                    .names
                    .push((ident.to_string(), Binding::Item));
            }
            // Items inside function bodies (a `use` in a block, a helper fn) count as the
            // module's: close enough for a file-level graph.
            let mut nested = NestedItems(Vec::new());
            nested.visit_item(item);
            self.index_items(&nested.0, module, false)?;
            if with_references {
                let mut paths = Paths {
                    found: Vec::new(),
                    locals: Vec::new(),
                };
                paths.visit_item(item);
                for (path, text) in paths.found {
                    self.references.push(Reference {
                        module,
                        path: Named::Path(path),
                        text,
                    });
                }
            }
        }
        Ok(())
    }

    fn index_module(&mut self, m: &syn::ItemMod, module: usize) -> Result<(), String> {
        let name = m.ident.to_string();
        if let Some((_, items)) = &m.content {
            let id = self.modules.len();
            let parent = &self.modules[module];
            self.modules.push(Module {
                file: parent.file.clone(),
                parent: Some(module),
                root: parent.root,
                children_dir: format!("{}{name}/", parent.children_dir),
                names: Vec::new(),
                globs: Vec::new(),
            });
            self.modules[module].names.push((name, Binding::Module(id)));
            return self.index_items(items, id, true);
        }
        let dir = &self.modules[module].children_dir;
        let file = match path_attribute(&m.attrs) {
            Some(path) => format!("{}{path}", dir_of(&self.modules[module].file)),
            None => {
                let flat = format!("{dir}{name}.rs");
                if self.files.contains_key(&flat) {
                    flat
                } else {
                    format!("{dir}{name}/mod.rs")
                }
            }
        };
        let child = self.load(&file, Some(module), Some(&name))?;
        // A `#[cfg(test)]` module in a file of its own is the parent's tests, which use the
        // parent by nature; declaring it is not a dependency of the parent's code.
        if !is_cfg_test(&m.attrs) {
            self.references.push(Reference {
                module,
                path: Named::Module(child),
                text: format!("mod {name}"),
            });
        }
        Ok(())
    }

    fn index_use(
        &mut self,
        tree: &syn::UseTree,
        module: usize,
        prefix: &mut Vec<String>,
        external: bool,
    ) {
        let import = |this: &mut Self, name: Option<String>, path: Vec<String>| {
            if external {
                return;
            }
            this.references.push(Reference {
                module,
                text: path.join("::"),
                path: Named::Path(path.clone()),
            });
            if let Some(name) = name.filter(|n| n != "_") {
                this.modules[module]
                    .names
                    .push((name, Binding::Import(path)));
            }
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.index_use(&p.tree, module, prefix, external);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                if name == "self" {
                    let last = prefix.last().cloned();
                    import(self, last, prefix.clone());
                } else {
                    let path = [prefix.as_slice(), std::slice::from_ref(&name)].concat();
                    import(self, Some(name), path);
                }
            }
            syn::UseTree::Rename(r) => {
                let name = r.ident.to_string();
                let path = if name == "self" {
                    prefix.clone()
                } else {
                    [prefix.as_slice(), &[name]].concat()
                };
                import(self, Some(r.rename.to_string()), path);
            }
            syn::UseTree::Glob(_) => {
                if !external {
                    self.modules[module].globs.push(prefix.clone());
                    self.references.push(Reference {
                        module,
                        text: format!("{}::*", prefix.join("::")),
                        path: Named::Path(prefix.clone()),
                    });
                }
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.index_use(tree, module, prefix, external);
                }
            }
        }
    }

    fn file_of(&self, target: Target) -> &String {
        match target {
            Target::Item(m) | Target::Module(m) => &self.modules[m].file,
        }
    }

    /// What `path`, written in `module`, names; `None` for other crates' items.
    fn resolve(&self, module: usize, path: &[String], depth: usize) -> Option<Target> {
        if depth > 32 || path.is_empty() {
            return None;
        }
        let mut at = module;
        let mut rest = path;
        let first = match path[0].as_str() {
            "crate" => {
                at = self.modules[module].root;
                rest = &path[1..];
                Target::Module(at)
            }
            "self" => {
                rest = &path[1..];
                Target::Module(at)
            }
            "super" => {
                while rest.first().is_some_and(|s| s == "super") {
                    at = self.modules[at].parent?;
                    rest = &rest[1..];
                }
                Target::Module(at)
            }
            "Self" => return None,
            name => {
                rest = &path[1..];
                match self.lookup(module, name, !rest.is_empty(), depth) {
                    Some(found) => found,
                    None if name == self.crate_name
                        && self.modules[module].root != self.lib_root =>
                    {
                        Target::Module(self.lib_root)
                    }
                    None => return None,
                }
            }
        };
        let mut current = first;
        for (i, segment) in rest.iter().enumerate() {
            match current {
                Target::Module(m) => {
                    current = self.lookup(m, segment, i + 1 < rest.len(), depth)?;
                }
                // `Scheme::new`, `Enum::Variant`: the item names the file.
                Target::Item(_) => break,
            }
        }
        Some(current)
    }

    /// What `name` means in `module`: its own items and modules, its imports, then its
    /// glob imports. `more` says segments follow (so a module is preferred over a function
    /// of the same name).
    fn lookup(&self, module: usize, name: &str, more: bool, depth: usize) -> Option<Target> {
        let mut found: Vec<Target> = self.modules[module]
            .names
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, binding)| match binding {
                Binding::Item => Some(Target::Item(module)),
                Binding::Module(m) => Some(Target::Module(*m)),
                Binding::Import(path) => self.resolve(module, path, depth + 1),
            })
            .collect();
        found.sort_by_key(|t| matches!(t, Target::Module(_)) != more);
        if let Some(&first) = found.first() {
            return Some(first);
        }
        self.modules[module].globs.iter().find_map(|glob| {
            match self.resolve(module, glob, depth + 1)? {
                Target::Module(m) => self.lookup(m, name, more, depth + 1),
                Target::Item(_) => None,
            }
        })
    }
}

/// The directory part of `file`, with its trailing `/` (empty at the top).
fn dir_of(file: &str) -> String {
    file.rfind('/')
        .map_or(String::new(), |i| file[..=i].to_string())
}

/// The value of a `#[path = "…"]` attribute.
/// Whether the attributes include `#[cfg(test)]`.
fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Items declared inside function bodies and other blocks of one item.
struct NestedItems(Vec<syn::Item>);

impl<'a> Visit<'a> for NestedItems {
    fn visit_stmt(&mut self, stmt: &'a syn::Stmt) {
        match stmt {
            syn::Stmt::Item(item) => self.0.push(item.clone()),
            other => visit::visit_stmt(self, other),
        }
    }

    fn visit_item_mod(&mut self, _: &'a syn::ItemMod) {}
}

/// Every path one item uses, as segments and as written.
struct Paths {
    found: Vec<(Vec<String>, String)>,
    /// Names bound by patterns in the enclosing functions (parameters, `let`, closures,
    /// match arms).
    locals: Vec<HashSet<String>>,
}

impl Paths {
    fn with_locals_of(&mut self, walk: impl FnOnce(&mut Self), bind: impl FnOnce(&mut Bindings)) {
        let mut bindings = Bindings(HashSet::new());
        bind(&mut bindings);
        self.locals.push(bindings.0);
        walk(self);
        self.locals.pop();
    }

    fn is_local(&self, name: &str) -> bool {
        self.locals.iter().any(|set| set.contains(name))
    }
}

impl<'a> Visit<'a> for Paths {
    fn visit_path(&mut self, path: &'a syn::Path) {
        if path.leading_colon.is_none() {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.found.push((segments.clone(), segments.join("::")));
        }
        visit::visit_path(self, path);
    }

    fn visit_expr_path(&mut self, expr: &'a syn::ExprPath) {
        if expr.qself.is_none()
            && let Some(ident) = expr.path.get_ident()
            && self.is_local(&ident.to_string())
        {
            return;
        }
        visit::visit_expr_path(self, expr);
    }

    fn visit_item_fn(&mut self, item: &'a syn::ItemFn) {
        self.with_locals_of(|p| visit::visit_item_fn(p, item), |b| b.visit_item_fn(item));
    }

    fn visit_impl_item_fn(&mut self, item: &'a syn::ImplItemFn) {
        self.with_locals_of(
            |p| visit::visit_impl_item_fn(p, item),
            |b| b.visit_impl_item_fn(item),
        );
    }

    fn visit_trait_item_fn(&mut self, item: &'a syn::TraitItemFn) {
        self.with_locals_of(
            |p| visit::visit_trait_item_fn(p, item),
            |b| b.visit_trait_item_fn(item),
        );
    }

    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        self.visit_path(&mac.path);
        let parser = Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(args) = mac.parse_body_with(parser) {
            for expr in &args {
                self.visit_expr(expr);
            }
        }
    }

    // Attributes name derive macros and helper attributes (`#[error(…)]`), not items.
    fn visit_attribute(&mut self, _: &'a syn::Attribute) {}

    // `pub(super)`, `pub(in crate::x)`: visibility, not a use of the module.
    fn visit_visibility(&mut self, _: &'a syn::Visibility) {}

    // Handled as imports; nested modules are indexed on their own.
    fn visit_item_use(&mut self, _: &'a syn::ItemUse) {}
    fn visit_item_mod(&mut self, _: &'a syn::ItemMod) {}
}

/// Names bound by patterns.
struct Bindings(HashSet<String>);

impl<'a> Visit<'a> for Bindings {
    fn visit_pat_ident(&mut self, pat: &'a syn::PatIdent) {
        self.0.insert(pat.ident.to_string());
        visit::visit_pat_ident(self, pat);
    }

    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        let parser = Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(args) = mac.parse_body_with(parser) {
            for expr in &args {
                self.visit_expr(expr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_of(files: &[(&str, &str)]) -> Graph {
        let files = files
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect();
        file_graph(&files, "demo").expect("the example parses")
    }

    fn edges(graph: &Graph) -> Vec<String> {
        graph
            .iter()
            .flat_map(|(from, to)| to.keys().map(move |to| format!("{from} -> {to}")))
            .collect()
    }

    fn chains(graph: &Graph) -> Vec<String> {
        tangles(graph)
            .iter()
            .flat_map(|t| cycles_in(graph, t))
            .map(|c| c.join(" -> "))
            .collect()
    }

    #[test]
    fn two_files_naming_each_others_items_are_a_cycle() {
        let graph = graph_of(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b::B; pub struct A(B);"),
            (
                "b.rs",
                "pub struct B; pub fn f() -> crate::a::A { todo!() }",
            ),
        ]);
        assert_eq!(chains(&graph), ["a.rs -> b.rs -> a.rs"]);
        assert_eq!(
            graph["b.rs"]["a.rs"],
            BTreeSet::from(["crate::a::A".to_string()])
        );
    }

    #[test]
    fn a_test_module_in_a_file_of_its_own_is_not_a_dependency_of_its_parent() {
        let graph = graph_of(&[
            ("lib.rs", "mod ring;"),
            (
                "ring.rs",
                "pub struct Ring; #[cfg(test)] #[path = \"ring_tests.rs\"] mod tests;",
            ),
            ("ring_tests.rs", "use super::Ring;"),
        ]);
        assert!(chains(&graph).is_empty(), "{:?}", chains(&graph));
        assert!(edges(&graph).contains(&"ring_tests.rs -> ring.rs".to_string()));
    }

    #[test]
    fn a_re_export_is_followed_to_the_file_that_defines_the_item() {
        let graph = graph_of(&[
            ("lib.rs", "pub mod erasure;"),
            (
                "erasure/mod.rs",
                "mod codec; mod layout; pub use codec::Codec; pub use layout::Scheme;",
            ),
            ("erasure/layout.rs", "pub struct Scheme;"),
            (
                "erasure/codec.rs",
                "use super::Scheme; pub struct Codec(Scheme);",
            ),
        ]);
        assert_eq!(
            edges(&graph),
            [
                "erasure/codec.rs -> erasure/layout.rs",
                "erasure/mod.rs -> erasure/codec.rs",
                "erasure/mod.rs -> erasure/layout.rs",
                "lib.rs -> erasure/mod.rs",
            ]
        );
        assert!(chains(&graph).is_empty());
    }

    #[test]
    fn a_child_using_what_its_mod_rs_defines_is_a_cycle() {
        let graph = graph_of(&[
            ("lib.rs", "mod store;"),
            (
                "store/mod.rs",
                "mod read; pub struct Store; pub use read::Reader;",
            ),
            (
                "store/read.rs",
                "pub struct Reader; impl super::Store { fn r(&self) {} }",
            ),
        ]);
        assert_eq!(
            chains(&graph),
            ["store/mod.rs -> store/read.rs -> store/mod.rs"]
        );
    }

    #[test]
    fn groups_self_renames_globs_and_paths_in_code_are_followed() {
        let graph = graph_of(&[
            ("lib.rs", "mod a; mod b; mod c; mod d; mod e; mod user;"),
            ("a.rs", "pub fn f() {}"),
            ("b.rs", "pub struct B; pub(crate) fn b() {}"),
            ("c.rs", "pub const C: u8 = 1;"),
            ("d.rs", "pub enum D { One }"),
            ("e.rs", "pub fn e() {}"),
            (
                "user.rs",
                "use crate::{a::{self}, b::B as Bee}; use super::c::*;
                 fn g(x: Bee) -> u8 { a::f(); let _ = crate::d::D::One; assert_eq!(C, 1); x; C }
                 mod inner { pub(super) fn h() { crate::e::e() } }",
            ),
        ]);
        let from_user: Vec<&String> = graph["user.rs"].keys().collect();
        assert_eq!(from_user, ["a.rs", "b.rs", "c.rs", "d.rs", "e.rs"]);
        assert!(graph["user.rs"]["d.rs"].contains("crate::d::D::One"));
    }

    #[test]
    fn local_variables_and_other_crates_are_not_edges() {
        let graph = graph_of(&[
            ("lib.rs", "mod store; mod user;"),
            ("store.rs", "pub fn x() {}"),
            (
                "user.rs",
                "use std::fmt; fn f(store: u8) -> u8 { let _ = fmt::Error; store }",
            ),
        ]);
        assert!(!graph.contains_key("user.rs"), "{graph:?}");
    }

    #[test]
    fn the_binary_names_the_library_by_its_crate_name() {
        let graph = graph_of(&[
            ("lib.rs", "pub mod config;"),
            ("config.rs", "pub struct Config;"),
            ("main.rs", "fn main() { let _: demo::config::Config; }"),
        ]);
        assert_eq!(graph["main.rs"].keys().collect::<Vec<_>>(), ["config.rs"]);
    }
}
