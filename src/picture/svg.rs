//! The picture as SVG: each place (a provider, a host) a frame, in it its networks above the
//! VMs on them, each VM's disks below it, and the pools below those. layout-rs lays each place
//! out (layered, its edge crossings reduced); this module only reads back where it put each
//! box and each line, and writes the SVG with the marks' colours, a legend, and a tooltip
//! (`<title>`) saying why for each changed element. Nothing in it refers outside itself.

use std::collections::BTreeMap;
use std::fmt::Write;

use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::{Mark, Node, Picture, Shape};

/// Past this many elements in one place, the layout keeps its first order instead of reducing
/// edge crossings, which grows much faster than the graph (a 200-VM place: 1.3 s against
/// 15 ms).
const OPTIMISED_UP_TO: usize = 150;
/// A wide character's width at 12px sans-serif, bold (names are bold): boxes fit their text.
const CHAR_WIDTH: f64 = 7.8;
const LINE_HEIGHT: f64 = 15.0;
const PAD: f64 = 8.0;
const FRAME: f64 = 24.0;
const GAP: f64 = 30.0;
const LEGEND_HEIGHT: f64 = 24.0;

/// Where layout-rs put one place's boxes (by node index) and lines.
#[derive(Default)]
struct Placed {
    boxes: BTreeMap<usize, (Point, Point)>,
    lines: Vec<Vec<(Point, Point)>>,
}

/// A RenderBackend that only records: the boxes by their properties (the node's index), and
/// the lines' paths.
impl RenderBackend for Placed {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        if let Some(index) = properties.and_then(|p| p.parse().ok()) {
            self.boxes.insert(index, (xy, size));
        }
    }

    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_text(&mut self, _: Point, _: &str, _: &StyleAttr) {}

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _dashed: bool,
        _head: (bool, bool),
        _look: &StyleAttr,
        _properties: Option<String>,
        _text: &str,
    ) {
        if path.len() >= 2 {
            self.lines.push(path.to_vec());
        }
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

/// How far a node's text stands in from its left edge: a network's rounded ends take room.
fn inset(node: &Node) -> f64 {
    match node.shape {
        Shape::Network => PAD + 2.0 * LINE_HEIGHT,
        _ => PAD,
    }
}

fn size(node: &Node) -> Point {
    let lines = node.lines();
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(1);
    Point::new(
        (widest as f64 * CHAR_WIDTH + 2.0 * inset(node)).max(80.0),
        lines.len() as f64 * LINE_HEIGHT + 2.0 * PAD,
    )
}

/// Lays out one place's nodes (indices into the picture's) and the links between them.
fn lay_out(picture: &Picture, members: &[usize]) -> Placed {
    let mut graph = VisualGraph::new(Orientation::TopToBottom);
    let mut handles = BTreeMap::new();
    // Networks first, then VMs, disks, pools: the layers read top to bottom.
    let mut order: Vec<usize> = members.to_vec();
    order.sort_by_key(|i| picture.nodes[*i].shape);
    for i in order {
        let element = Element::create_with_properties(
            ShapeKind::new_box(""),
            StyleAttr::simple(),
            Orientation::LeftToRight,
            size(&picture.nodes[i]),
            i.to_string(),
        );
        handles.insert(picture.nodes[i].key.as_str(), graph.add_node(element));
    }
    for link in &picture.links {
        if let (Some(from), Some(to)) = (
            handles.get(link.from.as_str()),
            handles.get(link.to.as_str()),
        ) {
            let line = Arrow::new(
                LineEndKind::None,
                LineEndKind::None,
                LineStyleKind::Normal,
                "",
                &StyleAttr::simple(),
                &None,
                &None,
            );
            graph.add_edge(line, *from, *to);
        }
    }
    let mut placed = Placed::default();
    if graph.num_nodes() > 0 {
        graph.do_it(false, members.len() > OPTIMISED_UP_TO, false, &mut placed);
    }
    placed
}

/// XML text: what the picture's names and reasons hold is escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An `id` attribute's value from a node's key.
pub fn element_id(key: &str) -> String {
    let mut id = String::from("n-");
    for c in key.chars() {
        id.push(if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        });
    }
    id
}

/// The picture as one SVG document.
pub fn svg(picture: &Picture) -> String {
    let mut body = String::new();
    let mut x = GAP;
    let top = GAP + 20.0 + LEGEND_HEIGHT;
    let mut height: f64 = top;
    for place in &picture.places {
        let members: Vec<usize> = picture
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| &n.place == place)
            .map(|(i, _)| i)
            .collect();
        let placed = lay_out(picture, &members);
        let (min, max) = bounds(&placed);
        let dx = x + FRAME - min.x;
        let dy = top + FRAME + 10.0 - min.y;
        let width = (max.x - min.x) + 2.0 * FRAME;
        let frame_height = (max.y - min.y) + 2.0 * FRAME + 10.0;
        let _ = writeln!(
            body,
            "<g class=\"place\" id=\"{}\"><rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" \
             height=\"{frame_height:.1}\" rx=\"10\"/><text class=\"place-name\" x=\"{:.1}\" \
             y=\"{:.1}\">{}</text>",
            element_id(&format!("place:{place}")),
            x + 10.0,
            top + 18.0,
            esc(place)
        );
        for path in &placed.lines {
            let at = |p: Point| format!("{:.1} {:.1}", p.x + dx, p.y + dy);
            let mut d = format!(
                "M {} C {}, {}, {}",
                at(path[0].0),
                at(path[0].1),
                at(path[1].0),
                at(path[1].1)
            );
            for point in path.iter().skip(2) {
                let _ = write!(d, " S {}, {}", at(point.0), at(point.1));
            }
            let _ = writeln!(body, "<path class=\"link\" d=\"{d}\"/>");
        }
        for (index, (xy, size)) in &placed.boxes {
            let node = &picture.nodes[*index];
            node_svg(&mut body, node, xy.x + dx, xy.y + dy, size.x, size.y);
        }
        body.push_str("</g>\n");
        x += width + GAP;
        height = height.max(top + frame_height);
    }
    let width = x.max(legend_width(picture));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"siteplan-picture\" \
         viewBox=\"0 0 {width:.0} {:.0}\" width=\"{width:.0}\" height=\"{:.0}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<title>{}</title>\n<style>{}</style>\n",
        height + GAP,
        height + GAP,
        esc(&format!("Plan {}", picture.plan)),
        style()
    );
    legend(&mut out, picture);
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

fn bounds(placed: &Placed) -> (Point, Point) {
    let mut min = Point::new(f64::MAX, f64::MAX);
    let mut max = Point::new(f64::MIN, f64::MIN);
    for (xy, size) in placed.boxes.values() {
        min = Point::new(min.x.min(xy.x), min.y.min(xy.y));
        max = Point::new(max.x.max(xy.x + size.x), max.y.max(xy.y + size.y));
    }
    for path in &placed.lines {
        for (p, c) in path {
            for q in [p, c] {
                min = Point::new(min.x.min(q.x), min.y.min(q.y));
                max = Point::new(max.x.max(q.x), max.y.max(q.y));
            }
        }
    }
    if min.x > max.x {
        return (Point::new(0.0, 0.0), Point::new(120.0, 40.0));
    }
    (min, max)
}

fn node_svg(out: &mut String, node: &Node, x: f64, y: f64, w: f64, h: f64) {
    let shape = match node.shape {
        Shape::Network => "network",
        Shape::Vm => "vm",
        Shape::Disk => "disk",
        Shape::Pool => "pool",
        Shape::Other => "other",
    };
    let external = if node.external { " external" } else { "" };
    let rx = match node.shape {
        Shape::Network => h / 2.0,
        Shape::Vm => 6.0,
        _ => 2.0,
    };
    let _ = write!(
        out,
        "<g class=\"node {shape} {}{external}\" id=\"{}\" data-address=\"{}\" data-mark=\"{}\"",
        node.mark.as_str(),
        element_id(&node.key),
        esc(&node.address),
        node.mark.as_str()
    );
    if let Some(state) = &node.state {
        let _ = write!(out, " data-state=\"{}\"", esc(state));
    }
    let mut title = format!("{} on {}: {}", node.address, node.place, node.mark.legend());
    if let Some(why) = &node.why {
        let _ = write!(title, " ({why})");
    }
    let _ = writeln!(
        out,
        "><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
         rx=\"{rx:.1}\"/>",
        esc(&title)
    );
    for (i, line) in node.lines().iter().enumerate() {
        let class = if i == 0 { "name" } else { "detail" };
        let _ = writeln!(
            out,
            "<text class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + inset(node),
            y + PAD + LINE_HEIGHT * (i as f64 + 0.8),
            esc(line)
        );
    }
    out.push_str("</g>\n");
}

/// The legend's entries: each mark with how many elements carry it, and where each starts.
fn legend_entries(picture: &Picture) -> Vec<(Mark, String, f64)> {
    let mut x = GAP;
    Mark::ALL
        .iter()
        .map(|mark| {
            let count = picture.nodes.iter().filter(|n| n.mark == *mark).count();
            let text = format!("{} ({count})", mark.legend());
            let at = x;
            x += 20.0 + text.chars().count() as f64 * CHAR_WIDTH + 16.0;
            (*mark, text, at)
        })
        .collect()
}

fn legend_width(picture: &Picture) -> f64 {
    legend_entries(picture).last().map_or(0.0, |(_, text, x)| {
        x + 20.0 + text.chars().count() as f64 * CHAR_WIDTH + GAP
    })
}

/// The legend: every mark, with how many elements carry it, and what the picture knows.
fn legend(out: &mut String, picture: &Picture) {
    let _ = writeln!(
        out,
        "<g class=\"legend\"><text class=\"place-name\" x=\"{GAP}\" y=\"{:.1}\">{}</text>",
        GAP - 6.0,
        esc(&format!(
            "Plan {}: {}",
            picture.plan,
            match picture.drawn_from {
                super::DrawnFrom::Live => "the change against what is live",
                super::DrawnFrom::Plan => "the plan alone (no provider asked)",
                super::DrawnFrom::Plans => "the plan against an older one",
            }
        ))
    );
    for (mark, text, x) in legend_entries(picture) {
        let y = GAP + 4.0;
        let _ = writeln!(
            out,
            "<g class=\"node {}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"14\" height=\"14\" \
             rx=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            mark.as_str(),
            x + 20.0,
            y + 11.0,
            esc(&text)
        );
    }
    out.push_str("</g>\n");
}

/// The drawing's style: the marks' colours; a dashed outline for what the plan does not
/// declare; removed elements struck through.
fn style() -> String {
    let mut css = String::from(
        ".place>rect{fill:#f8f9fa;stroke:#dadce0;stroke-width:1}\
         .place-name{font-weight:bold;font-size:13px;fill:#202124}\
         .link{fill:none;stroke:#80868b;stroke-width:1.2}\
         .node rect{stroke-width:1.6}\
         .node .name{font-weight:bold;fill:#202124}\
         .node .detail{fill:#3c4043}\
         .node.external rect{stroke-dasharray:4 3;fill:#ffffff}\
         .node.removed .name{text-decoration:line-through}",
    );
    for mark in Mark::ALL {
        let (fill, stroke) = mark.colours();
        let _ = write!(
            css,
            ".node.{0} rect{{fill:{fill};stroke:{stroke}}}",
            mark.as_str()
        );
    }
    css
}
