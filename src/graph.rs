//! The dependency graph of a plan: which entries need which, and what the plan refers to without
//! declaring it.
//!
//! An edge goes from an entry to what it needs (a VM to its network), so a reverse topological
//! order is a creation order. Names the plan does not declare but that may exist on a provider
//! (the `default` network, an image already in a pool) become external nodes, to be checked against
//! live state by the planner.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use std::collections::BTreeSet;

use crate::diagnostics::{did_you_mean, Diagnostics, Problem, Span};
use crate::manifest::model::{BootFile, EntryKind, Kind, Manifest, Ref};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    pub kind: Kind,
    pub name: String,
    /// Referred to by the plan but not declared in it.
    pub external: bool,
}

impl GraphNode {
    /// `vm/web1`: unique within a plan, and how the rest of siteplan addresses a resource.
    pub fn address(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// Why an edge exists: which key made the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    Network,
    Pool,
    Image,
    Profile,
    DiskPool,
    DiskImage,
    BootFile,
    AttachedTo,
    /// A VM's `securitygroups`.
    SecurityGroup,
    /// A security group's `network`.
    GroupNetwork,
    DependsOn,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Network => "nets",
            EdgeKind::Pool => "pool",
            EdgeKind::Image => "image",
            EdgeKind::Profile => "profile",
            EdgeKind::DiskPool => "disk pool",
            EdgeKind::DiskImage => "disk image",
            EdgeKind::BootFile => "kernel/initrd",
            EdgeKind::AttachedTo => "vms",
            EdgeKind::SecurityGroup => "securitygroups",
            EdgeKind::GroupNetwork => "network",
            EdgeKind::DependsOn => "depends_on",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub kind: EdgeKind,
    /// The reference that made the edge.
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct PlanGraph {
    pub graph: DiGraph<GraphNode, Edge>,
}

impl PlanGraph {
    /// Nodes in an order where everything comes after what it needs.
    pub fn creation_order(&self) -> Vec<NodeIndex> {
        // Cycles are reported while building, and an invalid plan never gets this far.
        let mut order = toposort(&self.graph, None).unwrap_or_default();
        order.reverse();
        order
    }

    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// The entries named (by name or address) and everything they need, transitively
    /// (`towards` = Outgoing), or everything that needs them (Incoming); `Err` names the first
    /// name that is no entry of the plan.
    pub fn closure(
        &self,
        names: &[String],
        towards: petgraph::Direction,
    ) -> Result<BTreeSet<String>, String> {
        let mut stack = Vec::new();
        for name in names {
            let found = self.graph.node_indices().find(|&i| {
                let node = &self.graph[i];
                !node.external && (node.name == *name || node.address() == *name)
            });
            match found {
                Some(i) => stack.push(i),
                None => return Err(name.clone()),
            }
        }
        let mut seen = BTreeSet::new();
        while let Some(i) = stack.pop() {
            if !seen.insert(self.graph[i].address()) {
                continue;
            }
            stack.extend(self.graph.neighbors_directed(i, towards));
        }
        Ok(seen)
    }

    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }
}

/// Builds the graph, reporting references that cannot be resolved and cycles.
pub fn build(manifest: &Manifest, d: &mut Diagnostics) -> PlanGraph {
    build_skipping(manifest, &[], d)
}

/// Builds the graph; references to the names in `unreadable` (entries already reported as
/// broken) are dropped quietly rather than reported as dangling.
pub fn build_skipping(
    manifest: &Manifest,
    unreadable: &[String],
    d: &mut Diagnostics,
) -> PlanGraph {
    let mut builder = Builder {
        unreadable,
        graph: DiGraph::new(),
        declared: HashMap::new(),
        external: HashMap::new(),
        seen_edges: HashSet::new(),
        manifest,
    };
    for entry in &manifest.entries {
        let index = builder.graph.add_node(GraphNode {
            kind: entry.kind.kind(),
            name: entry.name.clone(),
            external: false,
        });
        builder.declared.insert(entry.name.as_str(), index);
    }
    for entry in &manifest.entries {
        let from = builder.declared[entry.name.as_str()];
        match &entry.kind {
            EntryKind::Vm(vm) => {
                if let Some(profile) = &vm.profile {
                    // A missing profile was already reported when the VM was read.
                    if manifest.get(&profile.name).is_some() {
                        builder.link(from, profile, Kind::Profile, EdgeKind::Profile, d);
                    }
                }
                for nic in &vm.nets {
                    builder.link(from, &nic.network, Kind::Network, EdgeKind::Network, d);
                }
                builder.link(from, &vm.pool, Kind::Pool, EdgeKind::Pool, d);
                if let Some(image) = &vm.image {
                    builder.link(from, image, Kind::Image, EdgeKind::Image, d);
                }
                for disk in &vm.disks {
                    builder.link(from, &disk.pool, Kind::Pool, EdgeKind::DiskPool, d);
                    if let Some(image) = &disk.image {
                        builder.link(from, image, Kind::Image, EdgeKind::DiskImage, d);
                    }
                }
                if let Some(boot) = &vm.boot {
                    for file in std::iter::once(&boot.kernel).chain(&boot.initrd) {
                        if let BootFile::Image(image) = file {
                            builder.link(from, image, Kind::Image, EdgeKind::BootFile, d);
                        }
                    }
                }
                for group in &vm.security_groups {
                    builder.link(from, group, Kind::SecurityGroup, EdgeKind::SecurityGroup, d);
                }
            }
            EntryKind::SecurityGroup(group) => {
                builder.link(
                    from,
                    &group.network,
                    Kind::Network,
                    EdgeKind::GroupNetwork,
                    d,
                );
            }
            EntryKind::Image(image) => {
                builder.link(from, &image.pool, Kind::Pool, EdgeKind::Pool, d);
            }
            EntryKind::Disk(disk) => {
                builder.link(from, &disk.pool, Kind::Pool, EdgeKind::Pool, d);
                if let Some(image) = &disk.image {
                    builder.link(from, image, Kind::Image, EdgeKind::Image, d);
                }
                for vm in &disk.vms {
                    builder.link(from, vm, Kind::Vm, EdgeKind::AttachedTo, d);
                }
            }
            EntryKind::Dns(record) => {
                builder.link(from, &record.net, Kind::Network, EdgeKind::Network, d);
            }
            EntryKind::Network(_) | EntryKind::Pool(_) | EntryKind::Profile => {}
        }
        for dep in &entry.depends_on {
            builder.depend(from, dep, d);
        }
    }
    let graph = PlanGraph {
        graph: builder.graph,
    };
    report_cycles(&graph, d);
    graph
}

struct Builder<'m> {
    unreadable: &'m [String],
    graph: DiGraph<GraphNode, Edge>,
    declared: HashMap<&'m str, NodeIndex>,
    external: HashMap<(Kind, String), NodeIndex>,
    seen_edges: HashSet<(NodeIndex, NodeIndex, EdgeKind)>,
    manifest: &'m Manifest,
}

impl Builder<'_> {
    fn edge(&mut self, from: NodeIndex, to: NodeIndex, kind: EdgeKind, span: Span) {
        if self.seen_edges.insert((from, to, kind)) {
            self.graph.add_edge(from, to, Edge { kind, span });
        }
    }

    /// Resolves a reference to an entry of `kind`: declared, external, or a problem.
    fn link(&mut self, from: NodeIndex, to: &Ref, kind: Kind, edge: EdgeKind, d: &mut Diagnostics) {
        if self.unreadable.contains(&to.name) {
            return;
        }
        if let Some(&index) = self.declared.get(to.name.as_str()) {
            let found = self.graph[index].kind;
            if found == kind {
                self.edge(from, index, edge, to.span);
            } else {
                d.push(
                    Problem::error(
                        "plan::wrong-kind",
                        format!("`{}` is a {found}, but a {kind} is expected here", to.name),
                    )
                    .label(to.span, format!("expected a {kind}")),
                );
            }
            return;
        }
        match kind {
            // These may already exist on the provider; the planner checks.
            Kind::Network | Kind::Pool | Kind::Image | Kind::SecurityGroup => {
                if !self.external.contains_key(&(kind, to.name.clone())) {
                    self.near_miss(to, kind, d);
                }
                let index = *self
                    .external
                    .entry((kind, to.name.clone()))
                    .or_insert_with(|| {
                        self.graph.add_node(GraphNode {
                            kind,
                            name: to.name.clone(),
                            external: true,
                        })
                    });
                self.edge(from, index, edge, to.span);
            }
            Kind::Vm | Kind::Disk | Kind::Profile | Kind::Dns => self.dangling(to, Some(kind), d),
        }
    }

    /// A reference taken as external that is one letter away from an entry of its kind that
    /// the plan declares is most likely a typo: said, since the provider may also have it.
    fn near_miss(&self, to: &Ref, kind: Kind, d: &mut Diagnostics) {
        let close = self
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind.kind() == kind)
            .find(|e| strsim::damerau_levenshtein(&e.name, &to.name) == 1);
        if let Some(declared) = close {
            d.push(
                Problem::warning(
                    "plan::near-miss",
                    format!(
                        "`{}` is not declared in this plan, so it must already exist on the \
                         provider; the plan declares {kind} `{}`",
                        to.name, declared.name
                    ),
                )
                .label(to.span, "looked for on the provider")
                .help(format!("did you mean `{}`?", declared.name)),
            );
        }
    }

    fn depend(&mut self, from: NodeIndex, to: &Ref, d: &mut Diagnostics) {
        match self.declared.get(to.name.as_str()) {
            Some(&index) => self.edge(from, index, EdgeKind::DependsOn, to.span),
            None => self.dangling(to, None, d),
        }
    }

    fn dangling(&self, to: &Ref, kind: Option<Kind>, d: &mut Diagnostics) {
        if self.unreadable.contains(&to.name) {
            return;
        }
        let candidates = self
            .manifest
            .entries
            .iter()
            .filter(|e| kind.is_none_or(|k| e.kind.kind() == k))
            .map(|e| e.name.as_str());
        let what = kind.map_or("an entry".to_string(), |k| format!("a {k}"));
        let help = match did_you_mean(&to.name, candidates) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("declare {what} named `{}` in this plan", to.name),
        };
        d.push(
            Problem::error(
                "plan::dangling-reference",
                format!(
                    "`{}` refers to {what} that this plan does not declare",
                    to.name
                ),
            )
            .label(to.span, "not declared in this plan")
            .help(help),
        );
    }
}

/// Reports each cycle once, naming every step of it.
fn report_cycles(plan: &PlanGraph, d: &mut Diagnostics) {
    let g = &plan.graph;
    for component in tarjan_scc(g) {
        let is_cycle = component.len() > 1 || g.find_edge(component[0], component[0]).is_some();
        if !is_cycle {
            continue;
        }
        let members: HashSet<NodeIndex> = component.iter().copied().collect();
        let start = *component.iter().min().unwrap_or(&component[0]);
        let path = cycle_through(g, start, &members);
        let mut message = String::from("dependency cycle: ");
        for (i, step) in path.iter().enumerate() {
            if i > 0 {
                message.push_str(" → ");
            }
            let _ = write!(message, "{}", g[step.0].address());
        }
        let _ = write!(message, " → {}", g[start].address());
        let mut problem = Problem::error("plan::cycle", message)
            .help("remove one of these references; `depends_on` is the usual culprit");
        for (node, edge) in &path {
            let next = g
                .edge_endpoints(*edge)
                .map(|(_, to)| g[to].address())
                .unwrap_or_default();
            let e = &g[*edge];
            problem = problem.label(
                e.span,
                format!("{} needs {next} ({})", g[*node].address(), e.kind.as_str()),
            );
        }
        d.push(problem);
    }
}

/// A simple cycle from `start` back to it within one strongly connected component:
/// each step is a node and the edge leaving it.
fn cycle_through(
    g: &DiGraph<GraphNode, Edge>,
    start: NodeIndex,
    members: &HashSet<NodeIndex>,
) -> Vec<(NodeIndex, petgraph::graph::EdgeIndex)> {
    // Breadth-first search for the shortest way back to `start`.
    let mut came_from: HashMap<NodeIndex, (NodeIndex, petgraph::graph::EdgeIndex)> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut found = None;
    'search: while let Some(node) = queue.pop_front() {
        for e in g.edges(node) {
            let next = e.target();
            if !members.contains(&next) {
                continue;
            }
            if next == start {
                found = Some((node, e.id()));
                break 'search;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = came_from.entry(next) {
                v.insert((node, e.id()));
                queue.push_back(next);
            }
        }
    }
    let Some(last) = found else {
        return Vec::new();
    };
    let mut path = vec![last];
    let mut node = last.0;
    while node != start {
        let Some(&step) = came_from.get(&node) else {
            break;
        };
        path.push(step);
        node = step.0;
    }
    path.reverse();
    path
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Text,
}

pub fn render(plan: &PlanGraph, format: GraphFormat) -> String {
    match format {
        GraphFormat::Dot => render_dot(plan),
        GraphFormat::Mermaid => render_mermaid(plan),
        GraphFormat::Text => render_text(plan),
    }
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn render_dot(plan: &PlanGraph) -> String {
    let g = &plan.graph;
    let mut out = String::from(
        "digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n",
    );
    for index in g.node_indices() {
        let node = &g[index];
        let label = if node.external {
            format!("{} {}\\n(external)", node.kind, node.name)
        } else {
            format!("{} {}", node.kind, node.name)
        };
        let style = if node.external { ", style=dashed" } else { "" };
        let _ = writeln!(
            out,
            "  {} [label={}{style}];",
            dot_quote(&node.address()),
            dot_quote(&label)
        );
    }
    for edge in g.edge_references() {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            dot_quote(&g[edge.source()].address()),
            dot_quote(&g[edge.target()].address()),
            dot_quote(edge.weight().kind.as_str())
        );
    }
    out.push_str("}\n");
    out
}

fn render_mermaid(plan: &PlanGraph) -> String {
    let g = &plan.graph;
    let mut out = String::from("flowchart LR\n");
    for index in g.node_indices() {
        let node = &g[index];
        let suffix = if node.external { " (external)" } else { "" };
        let class = if node.external { ":::external" } else { "" };
        let _ = writeln!(
            out,
            "  n{}[\"{} {}{suffix}\"]{class}",
            index.index(),
            node.kind,
            node.name.replace('"', "#quot;")
        );
    }
    for edge in g.edge_references() {
        let _ = writeln!(
            out,
            "  n{} -->|{}| n{}",
            edge.source().index(),
            edge.weight().kind.as_str(),
            edge.target().index()
        );
    }
    out.push_str("  classDef external stroke-dasharray: 5 5\n");
    out
}

fn render_text(plan: &PlanGraph) -> String {
    let g = &plan.graph;
    let mut out = String::new();
    for index in plan.creation_order() {
        let node = &g[index];
        let _ = write!(out, "{}", node.address());
        if node.external {
            out.push_str(" (external: must exist on the provider)");
        }
        out.push('\n');
        let mut needs: Vec<String> = g
            .edges(index)
            .map(|e| format!("{} ({})", g[e.target()].address(), e.weight().kind.as_str()))
            .collect();
        needs.sort();
        for need in needs {
            let _ = writeln!(out, "  needs {need}");
        }
    }
    out
}
