//! The dashboard's charts: inline SVG drawn on the server from the usage aggregates (no
//! script, no image requests). Geometry is integer arithmetic on nano-units; each bar carries
//! its exact amount in a `<title>` (a tooltip, and what a screen reader reads).
use maud::{Markup, html};
use router_proto::Money;

use super::i18n::Text;

const WIDTH: i64 = 640;
const HEIGHT: i64 = 220;
const TOP: i64 = 16;
const BOTTOM: i64 = 28;
const LEFT: i64 = 8;

/// `part / whole` of `length`, rounded down (0 when `whole` is 0).
fn share(part: i64, whole: i64, length: i64) -> i64 {
    if whole <= 0 || part <= 0 {
        return 0;
    }
    i64::try_from(i128::from(part) * i128::from(length) / i128::from(whole)).unwrap_or(length)
}

/// A bar chart of one amount per day, oldest first: `(YYYY-MM-DD, nanos)`.
pub fn daily_spend(days: &[(String, i64)], currency: &str, text: &Text) -> Markup {
    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let count = i64::try_from(days.len()).unwrap_or(1).max(1);
    let plot = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT * 2) / count;
    let bar = (slot - 4).max(2);
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="daily-title daily-desc"
                preserveAspectRatio="xMidYMid meet" {
                title #daily-title { (text.daily_spend) }
                desc #daily-desc {
                    (text.daily_spend_desc) " " (currency) " max " (Money::from_nanos(max))
                }
                line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH - LEFT) y2=(HEIGHT - BOTTOM) {}
                @for (i, (day, nanos)) in days.iter().enumerate() {
                    @let i = i64::try_from(i).unwrap_or(0);
                    @let h = share(*nanos, max, plot).max(i64::from(*nanos > 0));
                    @let x = LEFT + i * slot + (slot - bar) / 2;
                    rect.bar x=(x) y=(HEIGHT - BOTTOM - h) width=(bar) height=(h) {
                        title { (day) ": " (Money::from_nanos(*nanos)) " " (currency) }
                    }
                    @if i == 0 || i == count - 1 || i == count / 2 {
                        text.label x=(x + bar / 2) y=(HEIGHT - 8) text-anchor="middle" {
                            (day.get(5..).unwrap_or(day))
                        }
                    }
                }
                text.label x=(LEFT) y=(TOP - 4) { (Money::from_nanos(max)) " " (currency) }
            }
            figcaption { (text.daily_spend) }
        }
    }
}

/// Horizontal bars of spend per model, largest first: `(model, nanos)`.
pub fn by_model(models: &[(String, i64)], currency: &str, text: &Text) -> Markup {
    let max = models.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let row = 30;
    let label = 200;
    let height = row * i64::try_from(models.len()).unwrap_or(0).max(1) + 8;
    let plot = WIDTH - label - 150;
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-labelledby="model-title model-desc" {
                title #model-title { (text.spend_by_model) }
                desc #model-desc { (text.spend_by_model_desc) }
                @for (i, (model, nanos)) in models.iter().enumerate() {
                    @let y = 4 + row * i64::try_from(i).unwrap_or(0);
                    @let w = share(*nanos, max, plot).max(i64::from(*nanos > 0));
                    text.label x=(label - 8) y=(y + 19) text-anchor="end" { (model) }
                    rect.bar x=(label) y=(y + 4) width=(w) height=(row - 10) {
                        title { (model) ": " (Money::from_nanos(*nanos)) " " (currency) }
                    }
                    text.label x=(label + w + 6) y=(y + 19) { (Money::from_nanos(*nanos)) }
                }
            }
            figcaption { (text.spend_by_model) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::i18n::EN;

    #[test]
    fn bars_scale_with_the_largest_amount() {
        assert_eq!(share(5, 10, 100), 50);
        assert_eq!(share(0, 0, 100), 0);
        assert_eq!(share(i64::MAX, i64::MAX, 100), 100);
        let days = vec![("2026-12-01".to_owned(), 1_000_000_000), ("2026-12-02".to_owned(), 250_000_000)];
        let svg = daily_spend(&days, "USD", &EN).into_string();
        assert!(svg.contains("2026-12-01: 1 USD"), "{svg}");
        assert!(svg.contains("2026-12-02: 0.25 USD"), "{svg}");
        assert!(svg.contains("height=\"176\""), "the largest bar fills the plot: {svg}");
        assert!(svg.contains("height=\"44\""), "a quarter of it: {svg}");
        let models = by_model(&[("m<1>".to_owned(), 3)], "USD", &EN).into_string();
        assert!(models.contains("m&lt;1&gt;: 0.000000003 USD"), "{models}");
    }
}
