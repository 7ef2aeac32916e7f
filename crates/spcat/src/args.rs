//! The command line, parsed exactly as nngcat 1.5.2 parses it (its
//! `nng_opts_parse`): long options may be abbreviated to any unambiguous
//! prefix, `--opt=value` and `--opt:value` work, a short option's argument may
//! be glued (`-Dhello`), and parsing stops at the first word that is not an
//! option (the rest is ignored, as nngcat ignores it).

use std::time::Duration;

/// nngcat's option values (and spcat's additions: `--stats`, `--progress`,
/// `--no-progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    Help,
    Verbose,
    Silent,
    Proto(Proto),
    Dial,
    Listen,
    Data,
    File,
    Subscribe,
    Interval,
    Delay,
    Count,
    Format,
    Fmt(Format),
    Compat,
    Async,
    RecvTimeout,
    SendTimeout,
    SocketName,
    ListenIpc,
    DialIpc,
    ListenLocal,
    DialLocal,
    Insecure,
    CaCert,
    Key,
    Cert,
    Version,
    RecvMaxSz,
    ZtHome,
    Stats,
    Progress,
    NoProgress,
}

/// The socket types nngcat knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Req0,
    Rep0,
    Push0,
    Pull0,
    Pub0,
    Sub0,
    Surveyor0,
    Respondent0,
    Pair0,
    Pair1,
    /// `--pair`: PAIR1, or PAIR0 with `--compat`.
    Pair,
    Bus0,
}

/// How received messages are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `--format no`: nothing.
    Blank,
    Raw,
    Ascii,
    Quoted,
    Msgpack,
    Hex,
}

struct Spec {
    name: &'static str,
    short: Option<u8>,
    opt: Opt,
    arg: bool,
}

const fn s(name: &'static str, short: Option<u8>, opt: Opt, arg: bool) -> Spec {
    Spec {
        name,
        short,
        opt,
        arg,
    }
}

/// nngcat 1.5.2's table, in its order, plus spcat's own.
const SPECS: &[Spec] = &[
    s("help", Some(b'h'), Opt::Help, false),
    s("verbose", Some(b'v'), Opt::Verbose, false),
    s("silent", Some(b'q'), Opt::Silent, false),
    s("req0", None, Opt::Proto(Proto::Req0), false),
    s("rep0", None, Opt::Proto(Proto::Rep0), false),
    s("push0", None, Opt::Proto(Proto::Push0), false),
    s("pull0", None, Opt::Proto(Proto::Pull0), false),
    s("pub0", None, Opt::Proto(Proto::Pub0), false),
    s("sub", None, Opt::Proto(Proto::Sub0), false),
    s("sub0", None, Opt::Proto(Proto::Sub0), false),
    s("surveyor0", None, Opt::Proto(Proto::Surveyor0), false),
    s("respondent0", None, Opt::Proto(Proto::Respondent0), false),
    s("pair", None, Opt::Proto(Proto::Pair), false),
    s("pair0", None, Opt::Proto(Proto::Pair0), false),
    s("pair1", None, Opt::Proto(Proto::Pair1), false),
    s("bus0", None, Opt::Proto(Proto::Bus0), false),
    s("dial", None, Opt::Dial, true),
    s("listen", None, Opt::Listen, true),
    s("data", Some(b'D'), Opt::Data, true),
    s("file", Some(b'F'), Opt::File, true),
    s("subscribe", None, Opt::Subscribe, true),
    s("format", None, Opt::Format, true),
    s("ascii", Some(b'A'), Opt::Fmt(Format::Ascii), false),
    s("quoted", Some(b'Q'), Opt::Fmt(Format::Quoted), false),
    s("raw", None, Opt::Fmt(Format::Raw), false),
    s("hex", None, Opt::Fmt(Format::Hex), false),
    s("msgpack", None, Opt::Fmt(Format::Msgpack), false),
    s("compat", None, Opt::Compat, false),
    s("async", None, Opt::Async, false),
    s("recv-maxsz", Some(b'Z'), Opt::RecvMaxSz, true),
    s("count", Some(b'C'), Opt::Count, true),
    s("delay", Some(b'd'), Opt::Delay, true),
    s("interval", Some(b'i'), Opt::Interval, true),
    s("recv-timeout", None, Opt::RecvTimeout, true),
    s("send-timeout", None, Opt::SendTimeout, true),
    s("socket-name", None, Opt::SocketName, true),
    // nanocat's names
    s("bind", None, Opt::Listen, true),
    s("connect", None, Opt::Dial, true),
    s("bind-ipc", Some(b'X'), Opt::ListenIpc, true),
    s("connect-ipc", Some(b'x'), Opt::DialIpc, true),
    s("bind-local", Some(b'L'), Opt::ListenLocal, true),
    s("connect-local", Some(b'l'), Opt::DialLocal, true),
    s("insecure", Some(b'k'), Opt::Insecure, false),
    s("cacert", None, Opt::CaCert, true),
    s("key", None, Opt::Key, true),
    s("cert", Some(b'E'), Opt::Cert, true),
    s("zt-home", None, Opt::ZtHome, true),
    s("version", Some(b'V'), Opt::Version, false),
    // spcat's own
    s("stats", None, Opt::Stats, false),
    s("progress", None, Opt::Progress, false),
    s("no-progress", None, Opt::NoProgress, false),
];

/// Why one step of parsing failed (nngcat's `NNG_EINVAL`, `NNG_EAMBIGUOUS`,
/// `NNG_ENOARG`), with the word at fault.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Invalid(String),
    Ambiguous(String),
    NoArg(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Invalid(w) => write!(f, "Option {w} is invalid."),
            ParseError::Ambiguous(w) => write!(f, "Option {w} is ambiguous (specify in full)."),
            ParseError::NoArg(w) => write!(f, "Option {w} requires argument."),
        }
    }
}

/// Walks the words like `nng_opts_parse`: `Ok(None)` at the end of the
/// options (end of words, a non-option word, or a lone `-`).
pub struct Parser<'a> {
    words: &'a [Vec<u8>],
    idx: usize,
}

impl<'a> Parser<'a> {
    /// Starts after the program name.
    pub fn new(words: &'a [Vec<u8>]) -> Self {
        Parser { words, idx: 1 }
    }

    /// The next option and its argument.
    #[allow(clippy::type_complexity)]
    pub fn next_opt(&mut self) -> Result<Option<(Opt, Option<&'a [u8]>)>, ParseError> {
        let Some(word) = self.words.get(self.idx) else {
            return Ok(None);
        };
        let word: &'a [u8] = word;
        let shown = || String::from_utf8_lossy(word).into_owned();
        if word.first() != Some(&b'-') {
            return Ok(None);
        }
        if word.len() == 1 {
            self.idx += 1;
            return Ok(None);
        }
        let (body, short) = if word[1] == b'-' {
            (&word[2..], false)
        } else {
            (&word[1..], true)
        };
        let l = if short {
            1
        } else {
            body.iter()
                .position(|&c| c == b'=' || c == b':')
                .unwrap_or(body.len())
        };
        let mut matches = 0;
        let mut found = None;
        for sp in SPECS {
            if short {
                if sp.short == Some(body[0]) {
                    matches = 1;
                    found = Some(sp);
                    break;
                }
                continue;
            }
            if !sp.name.as_bytes().starts_with(&body[..l]) {
                continue;
            }
            matches += 1;
            found = Some(sp);
            if sp.name.len() == l {
                matches = 1;
                break;
            }
        }
        let sp = match (matches, found) {
            (1, Some(sp)) => sp,
            (0, _) | (_, None) => return Err(ParseError::Invalid(shown())),
            _ => return Err(ParseError::Ambiguous(shown())),
        };
        if !sp.arg {
            if l != body.len() {
                return Err(ParseError::Invalid(shown()));
            }
            self.idx += 1;
            return Ok(Some((sp.opt, None)));
        }
        let arg: &'a [u8] = if l != body.len() {
            if short {
                &body[l..]
            } else {
                &body[l + 1..]
            }
        } else {
            self.idx += 1;
            match self.words.get(self.idx) {
                Some(a) => a,
                None => return Err(ParseError::NoArg(shown())),
            }
        };
        self.idx += 1;
        Ok(Some((sp.opt, Some(arg))))
    }
}

/// nngcat's `intarg`: digits only, at most `max`, computed in a C `int` the
/// way nngcat computes it (so a wrap past 2^31 reports "overflow").
pub fn intarg(val: &[u8], max: u64) -> Result<u64, &'static str> {
    if val.is_empty() {
        return Err("Empty integer argument.");
    }
    let max = max.min(i32::MAX as u64) as i32;
    let mut v: i32 = 0;
    for &c in val {
        if !c.is_ascii_digit() {
            return Err("Integer argument expected.");
        }
        v = v.wrapping_mul(10).wrapping_add(i32::from(c - b'0'));
        if v > max {
            return Err("Integer argument too large.");
        }
    }
    if v < 0 {
        return Err("Integer argument overflow.");
    }
    Ok(v as u64)
}

/// Seconds (nngcat's range: at most a day) as a duration.
pub fn secs(val: &[u8]) -> Result<Duration, &'static str> {
    intarg(val, 86400).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(a: &[&str]) -> Vec<Vec<u8>> {
        std::iter::once("spcat")
            .chain(a.iter().copied())
            .map(|w| w.as_bytes().to_vec())
            .collect()
    }

    type Parsed = Vec<(Opt, Option<Vec<u8>>)>;

    fn all(a: &[&str]) -> Result<Parsed, ParseError> {
        let w = words(a);
        let mut p = Parser::new(&w);
        let mut out = Vec::new();
        while let Some((o, arg)) = p.next_opt()? {
            out.push((o, arg.map(|a| a.to_vec())));
        }
        Ok(out)
    }

    #[test]
    fn prefixes_and_aliases() {
        assert_eq!(all(&["--req"]).unwrap()[0].0, Opt::Proto(Proto::Req0));
        assert_eq!(all(&["--sub"]).unwrap()[0].0, Opt::Proto(Proto::Sub0));
        assert_eq!(all(&["--pair"]).unwrap()[0].0, Opt::Proto(Proto::Pair));
        assert_eq!(all(&["--bus"]).unwrap()[0].0, Opt::Proto(Proto::Bus0));
        assert_eq!(all(&["--re"]), Err(ParseError::Ambiguous("--re".into())));
        assert_eq!(all(&["-vv"]), Err(ParseError::Invalid("-vv".into())));
        assert_eq!(all(&["--dial"]), Err(ParseError::NoArg("--dial".into())));
    }

    #[test]
    fn arguments() {
        let r = all(&["--dial=tcp://a:1", "-Dhi", "-F", "x", "stop", "--bogus"]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (Opt::Dial, Some(b"tcp://a:1".to_vec())));
        assert_eq!(r[1], (Opt::Data, Some(b"hi".to_vec())));
        assert_eq!(r[2], (Opt::File, Some(b"x".to_vec())));
    }

    #[test]
    fn integers() {
        assert_eq!(intarg(b"65536", 65536), Ok(65536));
        assert!(intarg(b"65537", 65536).is_err());
        assert!(intarg(b"", 5).is_err());
        assert!(intarg(b"1.5", 5).is_err());
        assert_eq!(
            intarg(b"2147483648", 0x7fff_ffff),
            Err("Integer argument overflow.")
        );
    }
}
