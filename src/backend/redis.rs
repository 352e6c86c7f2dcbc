//! Redis backend (not built yet: see issue "Redis backend").

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lock::{Attempt, Backend, Lease, LockName, LockRequest, Renewal, SlotState, WaitOutcome};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
}

impl RedisConfig {
    pub fn parse(url: &str) -> Result<Self> {
        Ok(RedisConfig { url: url.to_owned() })
    }
}

pub struct RedisBackend;
pub struct RedisLease;

impl Lease for RedisLease {
    fn slot(&self) -> u32 {
        1
    }
    fn fence(&self) -> Option<u64> {
        None
    }
    fn expires_at(&self) -> Option<Instant> {
        None
    }
}

impl RedisBackend {
    pub async fn connect(_config: RedisConfig) -> Result<Self> {
        Err(Error::unavailable("the redis backend is not built yet"))
    }
}

impl Backend for RedisBackend {
    type Lease = RedisLease;
    async fn try_acquire(&mut self, _: &LockRequest, _: u32) -> Result<Attempt<RedisLease>> {
        unreachable!()
    }
    async fn wait(&mut self, _: &LockRequest, _: u32) -> Result<WaitOutcome<RedisLease>> {
        unreachable!()
    }
    fn renew_interval(&self, _: &LockRequest) -> Option<Duration> {
        None
    }
    async fn renew(&mut self, _: &mut RedisLease) -> Result<Renewal> {
        unreachable!()
    }
    async fn release(&mut self, _: RedisLease) -> Result<()> {
        unreachable!()
    }
    async fn status(&mut self, _: &LockName, _: Option<u32>) -> Result<Vec<SlotState>> {
        unreachable!()
    }
    async fn list(&mut self) -> Result<Vec<SlotState>> {
        unreachable!()
    }
    async fn force_release(&mut self, _: &LockName, _: Option<u32>) -> Result<Vec<SlotState>> {
        unreachable!()
    }
    fn display_url(&self) -> String {
        String::new()
    }
}
