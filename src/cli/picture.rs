//! `plan graph`: the plan's dependency graph, or the lab's picture (`--view topology`) drawn
//! from what the providers hold (as `plan status` sees the lab), from the plan alone, or from
//! the plan against another version of it; and the drawings `plan status -o` shares with it.

use std::process::ExitCode;

use super::args::{DrawFormat, GraphArgs, GraphView};
use super::out::say;
use super::{block_on, found, load, looking, print, EXIT_ERROR};
use crate::graph::{self, GraphFormat};
use crate::ops;
use crate::picture::{html, mermaid, svg, Picture};

pub(super) fn graph(args: GraphArgs) -> ExitCode {
    let drawn = || -> Result<String, ExitCode> {
        match args.view {
            GraphView::Deps => {
                let format = match args.format.unwrap_or(DrawFormat::Text) {
                    DrawFormat::Text => GraphFormat::Text,
                    DrawFormat::Dot => GraphFormat::Dot,
                    DrawFormat::Mermaid => GraphFormat::Mermaid,
                    other => return Err(refused(other, "the topology: add `--view topology`")),
                };
                let loaded = load(&args.plan, false)?;
                Ok(graph::render(&loaded.graph, format))
            }
            GraphView::Topology => {
                let format = args.format.unwrap_or(DrawFormat::Svg);
                if matches!(format, DrawFormat::Text | DrawFormat::Dot) {
                    return Err(refused(format, "the dependency graph (`--view deps`)"));
                }
                let (view, request, loaded) = looking(&args.plan, args.target)?;
                let picture = if args.plan_only || args.against.is_some() {
                    let drawn =
                        ops::picture_of_plans(&request, args.against.as_deref(), &loaded, &view);
                    found(Ok(drawn), &view)?
                } else {
                    found(block_on(ops::status(&request, &loaded, &view)), &view)?.picture
                };
                Ok(drawing(&picture, format))
            }
        }
    };
    let text = match drawn() {
        Ok(text) => text,
        Err(code) => return code,
    };
    match &args.out {
        None => print(&text),
        Some(file) => match std::fs::write(file, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                say!("error: cannot write {}: {e}", file.display());
                ExitCode::from(EXIT_ERROR)
            }
        },
    }
}

fn refused(format: DrawFormat, draws: &str) -> ExitCode {
    let name = format!("{format:?}").to_lowercase();
    say!("error: `--format {name}` draws {draws}");
    ExitCode::from(EXIT_ERROR)
}

/// The picture in one of its drawings (text and dot are the dependency graph's: svg).
pub(super) fn drawing(picture: &Picture, format: DrawFormat) -> String {
    match format {
        DrawFormat::Html => html::html(picture),
        DrawFormat::Mermaid => mermaid::mermaid(picture),
        DrawFormat::Json => picture.json(),
        DrawFormat::Svg | DrawFormat::Text | DrawFormat::Dot => svg::svg(picture),
    }
}
