use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::Mutex;
use storage::Store;
use uuid::Uuid;

/// An actor that owns the state of one key (a user) and is rebuilt from the store on restart.
/// `Env` is what every actor of the kind is given besides the store (settings, bounds).
pub trait Keyed: Actor<Context = Context<Self>> + Supervised {
    type Env: Clone + Send + Sync + 'static;

    fn for_key(key: Uuid, store: Store, env: Self::Env) -> Self;
}

/// Messages waiting for one keyed actor beyond this make `send().await` wait: backpressure.
pub const MAILBOX_CAPACITY: usize = 64;

/// Shards of the registry map: lookups from many HTTP workers rarely meet on one lock.
const SHARDS: usize = 64;

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// An actor with no message for this long is let go; it is restarted from the store on its
    /// next message, so idle users cost no memory.
    pub idle_after_ms: u64,
    /// How often idle actors are looked for.
    pub sweep_every_ms: u64,
    /// Arbiter threads the actors are spread over when they are not placed on their caller's.
    pub arbiters: usize,
    /// Start an actor on the arbiter (thread) of the caller that first needs it, when there is
    /// one. A create then reaches its account actor without a thread hop: on 2 busy cores each
    /// hop is a futex wake and a context switch, which the profile put at a sixth of all CPU.
    pub place_on_caller: bool,
    /// Upper bound of live actors; beyond it the least recently used go first.
    pub live_actors_max: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            idle_after_ms: 60_000,
            sweep_every_ms: 5_000,
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            live_actors_max: 100_000,
            place_on_caller: true,
        }
    }
}

struct Entry<A: Actor> {
    addr: Addr<A>,
    last_used: Instant,
}

/// Finds or starts the one actor of a key (for money: the one credit account of a user).
///
/// A plain sharded map rather than a manager actor: a lookup is a hash probe, and routing every
/// money operation through one more mailbox would make that mailbox the bottleneck. Correctness
/// does not rest on the map: every write is conditioned on the stored account being the one the
/// actor holds, so even two actors of one user (a lookup racing an eviction) cannot both spend.
pub struct Registry<A: Keyed> {
    store: Store,
    env: A::Env,
    shards: Vec<Mutex<HashMap<Uuid, Entry<A>>>>,
    arbiters: Vec<Arbiter>,
    next_arbiter: AtomicUsize,
    live: AtomicU64,
    started_total: AtomicU64,
    options: RegistryOptions,
}

impl<A: Keyed> Registry<A> {
    /// Must be called inside a running actix System (it starts arbiter threads).
    pub fn start(store: Store, options: RegistryOptions) -> Arc<Registry<A>>
    where
        A::Env: Default,
    {
        Self::start_with(store, A::Env::default(), options)
    }

    /// The same, giving every actor `env`.
    pub fn start_with(store: Store, env: A::Env, options: RegistryOptions) -> Arc<Registry<A>> {
        assert!(options.arbiters > 0 && options.live_actors_max > 0);
        let arbiters = (0..options.arbiters).map(|_| Arbiter::new()).collect();
        let registry = Arc::new(Registry {
            store,
            env,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            live: AtomicU64::new(0),
            started_total: AtomicU64::new(0),
            options,
        });
        let weak: Weak<Registry<A>> = Arc::downgrade(&registry);
        let every = Duration::from_millis(registry.options.sweep_every_ms.max(10));
        actix::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(registry) = weak.upgrade() else {
                    break;
                };
                let evicted = registry.evict_idle();
                if evicted > 0 {
                    tracing::debug!(
                        evicted,
                        actor = std::any::type_name::<A>(),
                        "idle actors let go"
                    );
                }
            }
        });
        registry
    }

    fn shard(&self, user_id: Uuid) -> &Mutex<HashMap<Uuid, Entry<A>>> {
        let h = user_id.as_u128();
        // UUID v7's leading bits are a timestamp; the low bits are random.
        &self.shards[(h as usize) % SHARDS]
    }

    /// The live actor of `user_id`, started if there is none.
    pub fn actor(&self, user_id: Uuid) -> Addr<A> {
        let mut shard = self.shard(user_id).lock();
        if let Some(entry) = shard.get_mut(&user_id) {
            if entry.addr.connected() {
                entry.last_used = Instant::now();
                return entry.addr.clone();
            }
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        let store = self.store.clone();
        let env = self.env.clone();
        let addr = Supervisor::start_in_arbiter(&self.placement(), move |_| {
            A::for_key(user_id, store, env)
        });
        shard.insert(
            user_id,
            Entry {
                addr: addr.clone(),
                last_used: Instant::now(),
            },
        );
        self.live.fetch_add(1, Ordering::Relaxed);
        self.started_total.fetch_add(1, Ordering::Relaxed);
        addr
    }

    /// Where a new actor starts: the caller's own arbiter if asked and there is one (an HTTP
    /// worker), else the next of the registry's arbiters in turn.
    fn placement(&self) -> ArbiterHandle {
        if self.options.place_on_caller {
            if let Some(own) = Arbiter::try_current() {
                return own;
            }
        }
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[i].handle()
    }

    /// Sends a message to the key's actor and waits for its answer. `send().await`, never
    /// `do_send`: a full mailbox makes the caller wait. `Closed` means the actor stopped before
    /// the handler ran (it was let go, or its arbiter is stopping): nothing was done, so one
    /// retry on a fresh actor is safe.
    pub async fn send<M>(&self, key: Uuid, msg: M) -> Result<M::Result, MailboxError>
    where
        M: actix::Message + Clone + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
    {
        let mut last = MailboxError::Closed;
        for _ in 0..2 {
            match self.actor(key).send(msg.clone()).await {
                Ok(result) => return Ok(result),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Lets go of actors idle for longer than the option says, and of the least recently used
    /// ones beyond the live bound. Returns how many went.
    pub fn evict_idle(&self) -> usize {
        let idle = Duration::from_millis(self.options.idle_after_ms);
        let now = Instant::now();
        let over = (self.live.load(Ordering::Relaxed) as usize)
            .saturating_sub(self.options.live_actors_max);
        // Beyond the bound, a shard gives up its share of the excess, oldest first.
        let per_shard_excess = over.div_ceil(SHARDS);
        let mut evicted = 0;
        for shard in &self.shards {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(|_, e| e.addr.connected() && now.duration_since(e.last_used) < idle);
            if per_shard_excess > 0 && !map.is_empty() {
                let mut ages: Vec<(Instant, Uuid)> =
                    map.iter().map(|(k, e)| (e.last_used, *k)).collect();
                ages.sort_unstable();
                for (_, k) in ages.into_iter().take(per_shard_excess) {
                    map.remove(&k);
                }
            }
            evicted += before - map.len();
        }
        self.live.fetch_sub(evicted as u64, Ordering::Relaxed);
        evicted
    }

    /// Live actors now.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// Actors started since the process began.
    pub fn started_total(&self) -> u64 {
        self.started_total.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Drops every actor and stops the arbiter threads (at shutdown, after HTTP has drained).
    pub fn stop(&self) {
        for shard in &self.shards {
            shard.lock().clear();
        }
        self.live.store(0, Ordering::Relaxed);
        for a in &self.arbiters {
            a.stop();
        }
    }
}
