//! Readable device names from a `User-Agent` header: "Chrome on Linux", "Safari on iPhone", "curl".
//!
//! A small, hand-written guess that is only ever shown to the user it describes (it labels a session in
//! the device list); it needs no database of agents and never fails: anything unknown is "Unknown
//! browser".

/// The label for a session signed in from `user_agent`.
pub(super) fn device_label(user_agent: Option<&str>) -> String {
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return UNKNOWN.to_owned();
    };
    match (browser(agent), platform(agent)) {
        (Some(browser), Some(platform)) => format!("{browser} on {platform}"),
        (Some(browser), None) => browser.to_owned(),
        (None, Some(platform)) => format!("A browser on {platform}"),
        (None, None) => tool(agent).unwrap_or(UNKNOWN).to_owned(),
    }
}

const UNKNOWN: &str = "Unknown browser";

/// The browser, most specific first: Edge, Opera and Samsung Internet say "Chrome" too, Chrome says
/// "Safari", and Firefox on iOS says "Safari".
fn browser(agent: &str) -> Option<&'static str> {
    let has = |token: &str| agent.contains(token);
    let name = if has("Edg/") || has("EdgA/") || has("EdgiOS/") || has("Edge/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("SamsungBrowser/") {
        "Samsung Internet"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("HeadlessChrome/") {
        "Chrome (headless)"
    } else if has("Chromium/") {
        "Chromium"
    } else if has("Chrome/") || has("CriOS/") {
        "Chrome"
    } else if has("Safari/") || (has("AppleWebKit/") && has("Mobile/")) {
        "Safari"
    } else {
        return None;
    };
    Some(name)
}

/// The operating system or device; iOS devices first (they say "like Mac OS X"), Android before Linux.
fn platform(agent: &str) -> Option<&'static str> {
    let has = |token: &str| agent.contains(token);
    let name = if has("iPhone") {
        "iPhone"
    } else if has("iPad") {
        "iPad"
    } else if has("Android") {
        "Android"
    } else if has("Windows") {
        "Windows"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Macintosh") || has("Mac OS X") {
        "macOS"
    } else if has("FreeBSD") {
        "FreeBSD"
    } else if has("Linux") || has("X11") {
        "Linux"
    } else {
        return None;
    };
    Some(name)
}

/// A command-line tool or library ("curl/8.5.0", "python-requests/2.31"): its product name, when that
/// is short and plain.
fn tool(agent: &str) -> Option<&str> {
    if agent.starts_with("Mozilla/") {
        return None;
    }
    let name = agent.split(['/', ' ']).next()?;
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (plain && (1..=32).contains(&name.len())).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::device_label;

    #[test]
    fn common_agents_get_readable_names() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
                "Chrome (headless) on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
                "Edge on macOS",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/120.0 Mobile/15E148 Safari/605.1.15",
                "Firefox on iPad",
            ),
            ("curl/8.5.0", "curl"),
            ("python-requests/2.31.0", "python-requests"),
            ("", "Unknown browser"),
            ("Mozilla/5.0 (compatible; something)", "Unknown browser"),
            ("<script>alert(1)</script>", "Unknown browser"),
        ];
        for (agent, label) in cases {
            assert_eq!(device_label(Some(agent)), label, "{agent}");
        }
        assert_eq!(device_label(None), "Unknown browser");
    }
}
