//! The picture as one self-contained HTML page: the SVG inline, and under it every changed
//! element with why. No request leaves the page: no script, font, style sheet or image from
//! anywhere else (its Content-Security-Policy says so to the browser too).

use std::fmt::Write;

use super::{svg, Mark, Picture};

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn html(picture: &Picture) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n\
         <title>{}</title>\n<style>\
         body{{font-family:sans-serif;margin:16px;color:#202124}}\
         table{{border-collapse:collapse;margin-top:16px}}\
         td,th{{border:1px solid #dadce0;padding:4px 8px;text-align:left;font-size:13px}}\
         .figure{{overflow:auto}}.figure svg{{max-width:100%;height:auto}}\
         </style>\n</head>\n<body>\n<h1>{}</h1>\n<div class=\"figure\">\n",
        esc(&format!("siteplan: {}", picture.plan)),
        esc(&format!("Plan {}", picture.plan)),
    );
    out.push_str(&svg::svg(picture));
    out.push_str("</div>\n");
    let changed: Vec<_> = picture
        .nodes
        .iter()
        .filter(|n| n.mark != Mark::Unchanged)
        .collect();
    if changed.is_empty() {
        out.push_str("<p id=\"changes\">Nothing to change.</p>\n");
    } else {
        out.push_str(
            "<table id=\"changes\">\n<tr><th>change</th><th>element</th><th>where</th>\
             <th>state</th><th>why</th></tr>\n",
        );
        for node in changed {
            let _ = writeln!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                node.mark.as_str(),
                esc(node.mark.legend()),
                esc(&node.address),
                esc(&node.place),
                esc(node.state.as_deref().unwrap_or("")),
                esc(node.why.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}
