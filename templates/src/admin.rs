//! The operator's dashboard (`/admin`): the sign-in form and four pages (campaigns, lists,
//! deliverability, compliance) under one navigation. Every change is a POST form carrying the
//! session's CSRF token; charts are SVG drawn here, from aggregate counts only; nothing runs
//! in the browser and nothing is loaded from elsewhere.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::pages::{STYLE, SiteIdentity, colours};

/// What the dashboard adds to the public pages' style: room for tables and charts, the
/// navigation, progress bars.
const ADMIN_STYLE: &str = "body.admin{max-width:72rem}\
header.site{flex-wrap:wrap}\
nav.admin{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;align-items:center;margin-left:auto}\
nav.admin a{font-weight:600;text-decoration:none;padding:.2rem 0;border-bottom:3px solid transparent}\
nav.admin a[aria-current=page]{border-bottom-color:var(--accent)}\
nav.admin form{margin:0}nav.admin button{padding:.3rem .9rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.25rem}\
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
th{font-size:.85rem;color:#444}\
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
.muted{color:#555;font-size:.9rem}\
.bar{display:flex;height:.9rem;background:#e6e6e6;border-radius:3px;overflow:hidden;min-width:12rem;margin:.3rem 0}\
.bar span{display:block;height:100%}\
.c0{background:#0072b2}.c1{background:#009e73}.c2{background:#d55e00}.c3{background:#cc79a7}\
.sent{background:#009e73}.failed{background:#d55e00}.skipped{background:#8c8c8c}\
.status{display:inline-block;padding:0 .55rem;border-radius:1rem;font-size:.85rem;font-weight:600;\
background:#e6e6e6;color:#1a1a1a}\
.status.sending{background:#cdeede}.status.paused{background:#ffe9a8}.status.scheduled{background:#dce8f7}\
.status.cancelled{background:#f6d5d2}\
.actions form{margin:0}.actions button{padding:.35rem .9rem}\
details.confirm{display:inline-block}details.confirm summary{cursor:pointer;color:var(--danger);font-weight:600;\
padding:.35rem 0}\
details.confirm[open] summary{margin-bottom:.35rem}\
figure{margin:.5rem 0 1.5rem}\
svg.chart{display:block;width:100%;height:auto}\
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;margin:.25rem 0;font-size:.9rem;padding:0;list-style:none}\
.swatch{display:inline-block;width:1.4rem;height:.3rem;vertical-align:middle;margin-right:.4rem;border-radius:1px}\
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:1rem;margin:1rem 0}\
.card{border:1px solid #ddd;border-radius:4px;padding:.6rem 1rem}\
.card .big{display:block;font-size:1.5rem;font-weight:700;font-variant-numeric:tabular-nums}\
.ok{color:#006b4f}.warn{color:#a40000}.pending{color:#7a5200}\
div.sign-in{max-width:32rem}\
input[type=password]{display:block;width:100%;padding:.55rem .6rem;font:inherit;border:1px solid #767676;\
border-radius:4px}\
section.list{border-top:1px solid #ddd;margin-top:1.5rem}";

/// The pages behind the sign-in, in the order the navigation shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Campaigns,
    Lists,
    Deliverability,
    Compliance,
}

impl Section {
    const ALL: [Section; 4] = [
        Section::Campaigns,
        Section::Lists,
        Section::Deliverability,
        Section::Compliance,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::Campaigns => "Campaigns",
            Section::Lists => "Lists",
            Section::Deliverability => "Deliverability",
            Section::Compliance => "Compliance",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Section::Campaigns => "/admin/campaigns",
            Section::Lists => "/admin/lists",
            Section::Deliverability => "/admin/deliverability",
            Section::Compliance => "/admin/compliance",
        }
    }
}

/// Who is signed in, and the token every form of theirs carries.
pub struct Session<'a> {
    /// The name of the API key the session was opened with.
    pub key_name: &'a str,
    pub csrf: &'a str,
}

fn document(
    site: &SiteIdentity<'_>,
    title: &str,
    header_extra: Markup,
    body: Markup,
    foot: Option<Markup>,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " — Dashboard — " (site.org_name) }
                style { (PreEscaped(colours(site))) (PreEscaped(STYLE)) (PreEscaped(ADMIN_STYLE)) }
            }
            body.admin {
                header.site {
                    a href="/admin" {
                        @if let Some(logo) = site.logo_url { img src=(logo) alt=""; }
                        span { (site.org_name) " — dashboard" }
                    }
                    (header_extra)
                }
                main { (body) }
                @if let Some(foot) = foot { footer { (foot) } }
            }
        }
    }
}

/// The hidden field every form of the session carries.
fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// The layout of the pages behind the sign-in: the navigation, with signing out as a form.
pub fn layout(site: &SiteIdentity<'_>, session: &Session<'_>, current: Section, body: Markup) -> Markup {
    let nav = html! {
        nav.admin aria-label="Dashboard" {
            @for s in Section::ALL {
                @if s == current {
                    a href=(s.path()) aria-current="page" { (s.title()) }
                } @else {
                    a href=(s.path()) { (s.title()) }
                }
            }
            form method="post" action="/admin/sign-out" {
                (csrf_field(session.csrf))
                button.secondary type="submit" { "Sign out" }
            }
        }
    };
    let foot = html! {
        p { "Signed in with the API key " strong { (session.key_name) } ". Days are UTC days. "
            "Every figure here is a count; none names a person." }
    };
    document(site, current.title(), nav, body, Some(foot))
}

/// The sign-in form: an API key, as `letterhead api-key create` prints it.
pub fn sign_in(site: &SiteIdentity<'_>, csrf: &str, notice: Option<&str>, error: Option<&str>) -> Markup {
    let body = html! {
        div.sign-in {
            h1 { "Sign in" }
            @if let Some(n) = notice { p.notice role="status" { (n) } }
            form method="post" action="/admin/sign-in" {
                (csrf_field(csrf))
                label for="key" { "API key" }
                input id="key" type="password" name="key" autocomplete="off" required
                    aria-describedby="key-help" aria-invalid=[error.map(|_| "true")];
                @if let Some(e) = error { p.error id="key-error" role="alert" { (e) } }
                p.muted id="key-help" { "An API key of this service (" code { "letterhead api-key create --name NAME" }
                    "). Signing in keeps you signed in for 8 hours, or until the key is revoked." }
                p { button type="submit" { "Sign in" } }
            }
        }
    };
    document(site, "Sign in", html! {}, body, None)
}

/// `1234567` as `1,234,567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `part` of `whole` as a CSS width.
fn share(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "0%".into();
    }
    format!("{:.2}%", (part.max(0) as f64) * 100.0 / whole as f64)
}

// ---------------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------------

/// One line of a chart: a value per day.
pub struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<i64>,
}

/// Counts per day, drawn as lines, with the numbers themselves in a table below.
pub struct DayChart<'a> {
    /// Unique on the page: it prefixes the element ids.
    pub id: &'a str,
    pub title: &'a str,
    /// `YYYY-MM-DD`, oldest first; every series has one value per day.
    pub days: &'a [String],
    pub series: Vec<Series<'a>>,
}

/// Line colours (Okabe and Ito's, told apart also with colour blindness) and dash patterns
/// (told apart without colour).
const LINE_COLOURS: [&str; 4] = ["#0072b2", "#009e73", "#d55e00", "#cc79a7"];
const LINE_DASHES: [Option<&str>; 4] = [None, Some("6 3"), Some("2 2"), Some("8 3 2 3")];

/// The smallest of 1, 2, 5 × 10^k at or above `n`: a round top for the y axis.
fn round_up(n: i64) -> i64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if m * step >= n {
                return m * step;
            }
        }
        step *= 10;
    }
}

/// `YYYY-MM-DD` as `Mar 1`.
fn short_day(day: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = day.get(5..7).and_then(|m| m.parse::<usize>().ok());
    let date = day.get(8..10).and_then(|d| d.parse::<u32>().ok());
    match (month, date) {
        (Some(m @ 1..=12), Some(d)) => format!("{} {d}", MONTHS[m - 1]),
        _ => day.to_owned(),
    }
}

pub fn day_chart(chart: &DayChart<'_>) -> Markup {
    const WIDTH: f64 = 1000.0;
    const HEIGHT: f64 = 230.0;
    const LEFT: f64 = 52.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 26.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let days = chart.days.len().max(1);
    let highest = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0);
    let top = round_up(highest.max(1));
    let x = |i: usize| {
        if days == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (days - 1) as f64
        }
    };
    let y = |v: i64| TOP + plot_h - plot_h * v as f64 / top as f64;
    let ticks = [0, top / 2, top];
    // The first day, and every 30th back from the last.
    let labelled: Vec<(usize, &str)> = (0..days)
        .filter(|&i| i == 0 || i % 30 == (days - 1) % 30)
        .map(|i| {
            let anchor = match i {
                0 if days > 1 => "start",
                i if i == days - 1 && days > 1 => "end",
                _ => "middle",
            };
            (i, anchor)
        })
        .collect();
    let title_id = format!("{}-title", chart.id);
    let totals: Vec<i64> = chart.series.iter().map(|s| s.values.iter().sum()).collect();
    let busy_days: Vec<usize> = (0..chart.days.len())
        .rev()
        .filter(|&i| {
            chart
                .series
                .iter()
                .any(|s| s.values.get(i).is_some_and(|v| *v != 0))
        })
        .collect();
    html! {
        figure id=(chart.id) {
            figcaption { strong { (chart.title) } }
            ul.legend {
                @for (i, s) in chart.series.iter().enumerate() {
                    li {
                        span.swatch style={ "background:" (LINE_COLOURS[i % 4]) } {}
                        (s.name) ": "
                        strong id={ (chart.id) "-total-" (i) } { (count(totals[i])) }
                    }
                }
            }
            svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby=(title_id) {
                title id=(title_id) {
                    (chart.title) ", per day from " (chart.days.first().map(String::as_str).unwrap_or(""))
                    " to " (chart.days.last().map(String::as_str).unwrap_or("")) ": "
                    @for (i, s) in chart.series.iter().enumerate() {
                        @if i > 0 { ", " }
                        (count(totals[i])) " " (s.name)
                    }
                }
                @for t in ticks {
                    line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(t)) y2=(y(t)) stroke="#d9d9d9" stroke-width="1" {}
                    text x=(LEFT - 6.0) y=(y(t) + 4.0) text-anchor="end" font-size="12" fill="#555" { (count(t)) }
                }
                @for &(i, anchor) in &labelled {
                    text x=(x(i)) y=(HEIGHT - 8.0) text-anchor=(anchor) font-size="12" fill="#555" {
                        (short_day(&chart.days[i]))
                    }
                }
                @for (i, s) in chart.series.iter().enumerate() {
                    polyline fill="none" stroke=(LINE_COLOURS[i % 4]) stroke-width="2"
                        stroke-dasharray=[LINE_DASHES[i % 4]] stroke-linejoin="round"
                        points=(s.values.iter().enumerate()
                            .map(|(d, v)| format!("{:.1},{:.1}", x(d), y(*v)))
                            .collect::<Vec<_>>().join(" ")) {}
                }
            }
            details {
                summary { "Numbers by day" }
                @if busy_days.is_empty() {
                    p.muted { "Nothing on any day of the period." }
                } @else {
                    table {
                        thead { tr {
                            th { "Day" }
                            @for s in &chart.series { th.n { (s.name) } }
                        } }
                        tbody {
                            @for &i in &busy_days {
                                tr data-day=(chart.days[i]) {
                                    td { (chart.days[i]) }
                                    @for s in &chart.series { td.n { (count(s.values.get(i).copied().unwrap_or(0))) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Campaigns
// ---------------------------------------------------------------------------------------------

/// A campaign as the dashboard lists it.
pub struct CampaignRow<'a> {
    pub id: i64,
    pub subject: &'a str,
    pub status: &'a str,
    pub lists: String,
    /// When it was created, scheduled for, started, finished: whichever say most.
    pub when: String,
    pub recipients: i64,
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub cancelled: i64,
    /// While sending: messages per minute lately, and the time left at that rate.
    pub pace: Option<Pace>,
    pub can_pause: bool,
    pub can_resume: bool,
    pub can_cancel: bool,
}

pub struct Pace {
    pub per_minute: i64,
    /// `None` while nothing went out lately.
    pub time_left: Option<String>,
}

fn campaign_action(id: i64, action: &str, label: &str, class: &str, csrf: &str) -> Markup {
    html! {
        form method="post" action={ "/admin/campaigns/" (id) "/" (action) } {
            (csrf_field(csrf))
            button class=(class) type="submit" { (label) }
        }
    }
}

pub fn campaigns(
    site: &SiteIdentity<'_>,
    session: &Session<'_>,
    rows: &[CampaignRow<'_>],
    more: bool,
) -> Markup {
    let body = html! {
        h1 { "Campaigns" }
        @if rows.is_empty() {
            p { "No campaign yet. Campaigns are written and started through the API ("
                code { "POST /api/v1/campaigns" } ")." }
        }
        @if more {
            p.muted { "The newest " (rows.len()) " campaigns; the API lists every one ("
                code { "GET /api/v1/campaigns" } ")." }
        }
        @for c in rows {
            @let p = |what: &str| format!("c{}-{what}", c.id);
            section.list id={ "c" (c.id) } {
                h2 { (c.subject) " " span class={ "status " (c.status) } id=(p("status")) { (c.status) } }
                p.muted { "#" (c.id) " · " (c.lists) " · " (c.when) }
                @if c.recipients > 0 {
                    div.bar role="img" aria-label={
                        (count(c.sent)) " sent, " (count(c.failed)) " failed, " (count(c.skipped))
                        " skipped of " (count(c.recipients)) " recipients" } {
                        span.sent style={ "width:" (share(c.sent, c.recipients)) } {}
                        span.failed style={ "width:" (share(c.failed, c.recipients)) } {}
                        span.skipped style={ "width:" (share(c.skipped, c.recipients)) } {}
                    }
                    p {
                        strong id=(p("sent")) { (count(c.sent)) } " sent, "
                        strong id=(p("failed")) { (count(c.failed)) } " failed, "
                        strong id=(p("skipped")) { (count(c.skipped)) } " skipped of "
                        strong id=(p("recipients")) { (count(c.recipients)) } " recipients"
                        @if c.queued > 0 { "; " span id=(p("queued")) { (count(c.queued)) } " still to go" }
                        @if c.cancelled > 0 { "; " span id=(p("cancelled")) { (count(c.cancelled)) } " cancelled" }
                        "."
                    }
                } @else if c.status != "draft" && c.status != "scheduled" {
                    p { "It reached no one." }
                }
                @if let Some(pace) = &c.pace {
                    p id=(p("pace")) {
                        @if pace.per_minute > 0 {
                            (count(pace.per_minute)) " messages a minute"
                            @if let Some(left) = &pace.time_left { "; about " (left) " left at this rate" }
                            "."
                        } @else {
                            "Nothing sent in the last minute: waiting for the relay, or the messages are being retried."
                        }
                    }
                }
                @if c.can_pause || c.can_resume || c.can_cancel {
                    div.actions {
                        @if c.can_pause { (campaign_action(c.id, "pause", "Pause", "secondary", session.csrf)) }
                        @if c.can_resume { (campaign_action(c.id, "resume", "Resume", "", session.csrf)) }
                        @if c.can_cancel {
                            details.confirm {
                                summary { "Cancel…" }
                                (campaign_action(c.id, "cancel", "Cancel this campaign: what is not sent stays unsent", "danger confirm", session.csrf))
                            }
                        }
                    }
                }
            }
        }
    };
    layout(site, session, Section::Campaigns, body)
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

pub struct ListRow<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub confirmed: i64,
    pub pending: i64,
    pub unsubscribed: i64,
    pub chart: DayChart<'a>,
}

pub fn lists(site: &SiteIdentity<'_>, session: &Session<'_>, rows: &[ListRow<'_>]) -> Markup {
    let body = html! {
        h1 { "Lists" }
        @if rows.is_empty() {
            p { "No list yet (" code { "POST /api/v1/lists" } ")." }
        } @else {
            table {
                thead { tr { th { "List" } th.n { "Confirmed" } th.n { "Pending" } th.n { "Unsubscribed" } } }
                tbody {
                    @for l in rows {
                        tr {
                            td { a href={ "#list-" (l.slug) } { (l.name) } " " span.muted { "(" (l.slug) ")" } }
                            td.n id={ "list-" (l.slug) "-confirmed" } { (count(l.confirmed)) }
                            td.n id={ "list-" (l.slug) "-pending" } { (count(l.pending)) }
                            td.n id={ "list-" (l.slug) "-unsubscribed" } { (count(l.unsubscribed)) }
                        }
                    }
                }
            }
            p.muted { "Pending: signed up, not confirmed yet. The charts count the consent evidence "
                "still kept: an erased person's signup, or one retention deleted, no longer counts." }
            @for l in rows {
                section.list id={ "list-" (l.slug) } {
                    h2 { (l.name) }
                    (day_chart(&l.chart))
                }
            }
        }
    };
    layout(site, session, Section::Lists, body)
}

// ---------------------------------------------------------------------------------------------
// Deliverability
// ---------------------------------------------------------------------------------------------

/// What the relay has been doing, as the database saw it.
pub struct RelayView {
    /// Where mail goes (`MAIL_TRANSPORT` without credentials).
    pub target: String,
    /// One line: delivering, idle, or behind (and why it may be).
    pub verdict: String,
    pub healthy: bool,
    pub last_sent: Option<String>,
    pub last_deferred: Option<String>,
    pub last_failed: Option<String>,
    pub due: i64,
    pub oldest_due: Option<String>,
}

pub struct DeliverabilityView<'a> {
    pub relay: RelayView,
    /// Messages sent per day.
    pub sent: DayChart<'a>,
    /// Deferrals, failures and suppressions per day: on a scale of their own, where the sends
    /// of a campaign day would flatten them.
    pub trouble: DayChart<'a>,
    /// Suppressions kept, by reason (label, count).
    pub suppressions: Vec<(&'a str, i64)>,
}

pub fn deliverability(site: &SiteIdentity<'_>, session: &Session<'_>, v: &DeliverabilityView<'_>) -> Markup {
    let r = &v.relay;
    let body = html! {
        h1 { "Deliverability" }
        h2 { "The relay" }
        p id="relay-verdict" class=(if r.healthy { "ok" } else { "warn" }) { strong { (r.verdict) } }
        div.cards {
            div.card { "Mail goes to" span.big style="font-size:1rem" { (r.target) } }
            div.card { "Waiting to be sent" span.big id="relay-due" { (count(r.due)) }
                @if let Some(o) = &r.oldest_due { span.muted { "the oldest due since " (o) } } }
            div.card { "Last accepted" span.big style="font-size:1rem" { (r.last_sent.as_deref().unwrap_or("never")) } }
            div.card { "Last put off" span.big style="font-size:1rem" { (r.last_deferred.as_deref().unwrap_or("never")) }
                span.muted { "relay unreachable, a temporary refusal, or a pause" } }
            div.card { "Last refused for good" span.big style="font-size:1rem" { (r.last_failed.as_deref().unwrap_or("never")) } }
        }
        h2 { "The last 90 days" }
        (day_chart(&v.sent))
        (day_chart(&v.trouble))
        p.muted { "Sent: accepted by the relay. Deferred: tried again later (a temporary refusal, an "
            "unreachable relay, a paused campaign). Failed: refused for good, or out of attempts. "
            "Suppressed: addresses that bounced, complained, or were suppressed by hand." }
        h2 { "Suppressions kept" }
        table {
            thead { tr { th { "Reason" } th.n { "Addresses" } } }
            tbody {
                @for (label, n) in &v.suppressions {
                    tr { td { (label) } td.n { (count(*n)) } }
                }
            }
        }
        p.muted { "Only a keyed hash of each address is kept, never the address." }
    };
    layout(site, session, Section::Deliverability, body)
}

// ---------------------------------------------------------------------------------------------
// Compliance
// ---------------------------------------------------------------------------------------------

/// Where the notices of one policy version or breach notice are.
pub struct ReachView {
    pub sent: i64,
    pub due: i64,
    pub failed: i64,
    pub cancelled: i64,
}

pub struct PolicyRow<'a> {
    pub id: i64,
    pub version: &'a str,
    pub effective: String,
    pub published: String,
    pub material: bool,
    pub reach: ReachView,
}

pub struct BreachRow<'a> {
    pub id: i64,
    pub subject: &'a str,
    pub published: String,
    pub withdrawn: Option<String>,
    pub affected: &'a str,
    pub queued: i64,
    pub reach: ReachView,
}

pub struct RetentionRow<'a> {
    /// Unique on the page: it names the row's cells.
    pub id: &'a str,
    pub what: &'a str,
    pub last_90_days: i64,
    pub all: i64,
}

pub struct ComplianceView<'a> {
    pub policies: Vec<PolicyRow<'a>>,
    pub breaches: Vec<BreachRow<'a>>,
    /// Consent events kept, by kind: (label, events, of which still with IP or user agent).
    pub evidence: Vec<(&'a str, i64, i64)>,
    pub people_with_evidence: i64,
    pub retention: Vec<RetentionRow<'a>>,
    pub last_retention: Option<String>,
    /// The periods in force, one sentence each.
    pub periods: Vec<String>,
    pub erased: i64,
    pub opted_out: i64,
}

fn reach_cells(prefix: &str, r: &ReachView) -> Markup {
    html! {
        td.n id={ (prefix) "-sent" } { (count(r.sent)) }
        td.n id={ (prefix) "-due" } { (count(r.due)) }
        td.n id={ (prefix) "-failed" } { (count(r.failed)) }
        td.n id={ (prefix) "-cancelled" } { (count(r.cancelled)) }
        td {
            @if r.due == 0 && r.failed == 0 {
                span.ok { "Everyone told" }
            } @else if r.due > 0 {
                span.pending { "Still going out" }
            } @else {
                span.warn { (count(r.failed)) " not reached" }
            }
        }
    }
}

const REACH_HEADERS: [&str; 4] = ["Reached", "Still due", "Failed", "Not sent: suppressed"];

pub fn compliance(site: &SiteIdentity<'_>, session: &Session<'_>, v: &ComplianceView<'_>) -> Markup {
    let body = html! {
        h1 { "Compliance" }
        p { "Who was told what, what consent is on record, and what retention deleted: the "
            "evidence to show when asked whether every subscriber was told." }
        h2 { "Privacy policy versions" }
        @if v.policies.is_empty() {
            p { "No policy version published yet." }
        } @else {
            table {
                thead { tr {
                    th { "Version" } th { "Effective" } th { "Published" }
                    @for h in REACH_HEADERS { th.n { (h) } }
                    th {}
                } }
                tbody {
                    @for p in &v.policies {
                        tr id={ "policy-" (p.id) } {
                            td { (p.version) @if p.material { " " span.status { "material" } } }
                            td { (p.effective) } td { (p.published) }
                            (reach_cells(&format!("policy-{}", p.id), &p.reach))
                        }
                    }
                }
            }
        }
        h2 { "Breach notices" }
        @if v.breaches.is_empty() {
            p { "No breach notice published." }
        } @else {
            table {
                thead { tr {
                    th { "Notice" } th { "Published" } th.n { "Queued" }
                    @for h in REACH_HEADERS { th.n { (h) } }
                    th {}
                } }
                tbody {
                    @for b in &v.breaches {
                        tr id={ "breach-" (b.id) } {
                            td { (b.subject) br; span.muted { "Affected: " (b.affected) }
                                @if let Some(w) = &b.withdrawn { br; span.muted { "Withdrawn " (w) } } }
                            td { (b.published) }
                            td.n id={ "breach-" (b.id) "-queued" } { (count(b.queued)) }
                            (reach_cells(&format!("breach-{}", b.id), &b.reach))
                        }
                    }
                }
            }
        }
        p.muted { "From the notices still on record: the notice of someone erased since goes with them. "
            "Not sent: the address bounced, complained or was suppressed by hand before its notice went out." }
        h2 { "Consent evidence kept" }
        p { strong id="evidence-people" { (count(v.people_with_evidence)) } " people have consent evidence on record." }
        table {
            thead { tr { th { "Event" } th.n { "Kept" } th.n { "Still with IP address or user agent" } } }
            tbody {
                @for (label, n, abuse) in &v.evidence {
                    tr { td { (label) } td.n { (count(*n)) } td.n { (count(*abuse)) } }
                }
            }
        }
        h2 { "Retention" }
        ul { @for p in &v.periods { li { (p) } } }
        table {
            thead { tr { th { "Deleted by retention" } th.n { "Last 90 days" } th.n { "Since counting began" } } }
            tbody {
                @for r in &v.retention {
                    tr { td { (r.what) } td.n id={ (r.id) "-90" } { (count(r.last_90_days)) } td.n id={ (r.id) "-all" } { (count(r.all)) } }
                }
            }
        }
        p.muted { "Last run that deleted anything: " (v.last_retention.as_deref().unwrap_or("none yet")) "." }
        p { "Erased on request: " strong id="erased" { (count(v.erased)) } " addresses; opted out of everything and "
            "remembered so no import adds them again: " strong id="opted-out" { (count(v.opted_out)) }
            ". Of each, only a keyed hash is kept." }
    };
    layout(site, session, Section::Compliance, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-4200), "-4,200");
    }

    #[test]
    fn the_axis_tops_out_at_a_round_number() {
        assert_eq!(round_up(1), 1);
        assert_eq!(round_up(3), 5);
        assert_eq!(round_up(7), 10);
        assert_eq!(round_up(11), 20);
        assert_eq!(round_up(480), 500);
        assert_eq!(round_up(501), 1000);
    }

    #[test]
    fn days_read_as_month_and_date() {
        assert_eq!(short_day("2027-03-01"), "Mar 1");
        assert_eq!(short_day("2027-12-31"), "Dec 31");
        assert_eq!(short_day("odd"), "odd");
    }
}
