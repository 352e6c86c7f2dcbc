//! lockrun's Lua scripts as EVALSHA calls, named by a SHA1 written out in
//! the source instead of computed at run time.
//!
//! `redis::Script::new` hashes the whole script text on first use, in every
//! process: for the acquire script (about 4 KiB with the shared functions)
//! that was 130 000 instructions, 18% of an uncontended `lockrun -b redis://`
//! run (callgrind; bench/analysis.md, "Fast path, ninth round"). The SHA1 is
//! a fact about text that never changes at run time, so it lives next to the
//! text. `every_script_is_named_by_its_sha1` fails when one is stale, a
//! debug build (every test run) checks each script at its first use, and a
//! server that names a script it loads otherwise gets no further call under
//! the wrong name: see [`Invocation::loaded`].

use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, ToRedisArgs};

/// A script: its text in parts (the shared functions first), and the SHA1
/// of those parts joined.
pub(super) struct LuaScript {
    parts: &'static [&'static str],
    sha1: &'static str,
    /// Debug builds (every test run) hash the text once, at first use, and
    /// stop at a stale SHA1: a server that knows the old name would
    /// otherwise run the old text without a word.
    #[cfg(debug_assertions)]
    checked: std::sync::OnceLock<()>,
}

impl LuaScript {
    pub(super) const fn new(parts: &'static [&'static str], sha1: &'static str) -> Self {
        LuaScript {
            parts,
            sha1,
            #[cfg(debug_assertions)]
            checked: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn code(&self) -> String {
        self.parts.concat()
    }

    #[cfg(test)]
    pub(super) fn sha1(&self) -> &'static str {
        self.sha1
    }

    pub(super) fn prepare_invoke(&'static self) -> Invocation {
        #[cfg(debug_assertions)]
        self.checked.get_or_init(|| {
            let actual = redis::Script::new(&self.code()).get_hash().to_owned();
            assert_eq!(actual, self.sha1, "stale SHA1 for a Lua script");
        });
        Invocation {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(super) fn key<T: ToRedisArgs>(&'static self, key: T) -> Invocation {
        let mut invocation = self.prepare_invoke();
        invocation.key(key);
        invocation
    }
}

/// One call of a script, as `redis::ScriptInvocation`: keys and arguments,
/// sent as EVALSHA, and on NOSCRIPT (a server that restarted or flushed its
/// scripts) loaded and sent once more.
pub(super) struct Invocation {
    script: &'static LuaScript,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Invocation {
    pub(super) fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    pub(super) fn eval_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.sha1)
            .arg(self.keys.len())
            .arg(&*self.keys)
            .arg(&*self.args);
        cmd
    }

    fn load_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.script.code());
        cmd
    }

    /// The server's name for the script it just loaded must be ours: a
    /// stale SHA1 in the source would otherwise send every call to
    /// whatever script the server has under that name (say, an older
    /// lockrun's), or loop on NOSCRIPT.
    fn loaded(&self, named: &str) -> RedisResult<()> {
        if named.eq_ignore_ascii_case(self.script.sha1) {
            Ok(())
        } else {
            Err(RedisError::from((
                ErrorKind::Client,
                "lockrun's script name is stale",
                format!(
                    "the server names it {named}, lockrun calls it {} (a build fault; see `every_script_is_named_by_its_sha1`)",
                    self.script.sha1
                ),
            )))
        }
    }

    pub(super) fn is_no_script(e: &RedisError) -> bool {
        e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript)
    }

    /// After a NOSCRIPT: load, then call.
    pub(super) async fn load_then_invoke_async<T: FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        self.load_async(conn).await?;
        self.eval_cmd().query_async(conn).await
    }

    pub(super) async fn invoke_async<T: FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        match self.eval_cmd().query_async(conn).await {
            Err(e) if Self::is_no_script(&e) => self.load_then_invoke_async(conn).await,
            reply => reply,
        }
    }

    async fn load_async(&self, conn: &mut impl redis::aio::ConnectionLike) -> RedisResult<()> {
        let named: String = self.load_cmd().query_async(conn).await?;
        self.loaded(&named)
    }

    pub(super) fn invoke<T: FromRedisValue>(
        &self,
        conn: &mut dyn redis::ConnectionLike,
    ) -> RedisResult<T> {
        let eval = self.eval_cmd();
        match eval.query(conn) {
            Err(e) if Self::is_no_script(&e) => {
                let named: String = self.load_cmd().query(conn)?;
                self.loaded(&named)?;
                eval.query(conn)
            }
            reply => reply,
        }
    }
}
