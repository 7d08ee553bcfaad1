"""A message channel between the event loop and a worker process, with large buffers in shared memory.

A process producer or consumer talks to its worker over one ``AF_UNIX`` stream socket pair. Every item is
pickled with protocol 5; each buffer of at least ``min_shared_bytes`` inside it (numpy arrays anywhere in
tuples, dicts, lists) is copied once into a *slot* of a shared-memory pool instead of going through the
socket, and a small control message tells the other side where it is. The receiver's array is the slot itself
(the slot is *lent* to it, no copy); the slot goes back to the sender only when the last array using it dies,
so an item the receiver keeps is never overwritten::

    parent_end, worker_end = socket_pair()
    proc = ctx.Process(target=worker_main, args=(worker_end,))
    proc.start()
    worker_end.close()                      # the parent must not keep the worker's end, or no EOF arrives

    channel = ParentEndpoint(parent_end, loop, on_item=frames.put_nowait, on_eof=worker_gone)
    channel.start()
    await channel.send({"exposure": 3})     # waits (without blocking the loop) when the worker falls behind

    def worker_main(sock):                  # in the child
        channel = WorkerEndpoint(sock)
        try:
            while True:
                channel.send(camera.read(), block=False)    # a camera drops a frame when all slots are busy
        except ChannelClosed:
            pass
        finally:
            channel.close()

Ownership and policies:

- The receiver owns every array it gets: nothing else writes it while any reference to it lives. An item
  whose one large buffer fits a slot gets a writable view of that slot (lent): the sender never writes the
  slot again until the last array made from it died (in any thread); its RELEASE then goes back, batched with
  others. At most three quarters of a pool's slots are lent at once (3 of 4; none of a single slot): beyond
  that (a receiver that keeps arrays), and for items with several large buffers, the receiver copies the
  buffers out into memory of its own and hands the slot back at once, so a receiver that stores frames never
  stalls the sender for good.
- Slots bound how many large items are in flight in one direction (sent, not yet returned): ``slots`` of
  them, or up to twice as many for items small enough that a pool of them fits in ``pool_bytes`` (an
  endpoint's keyword; with few slots the sender waits for one while the receiver sleeps). Returned slots
  go back two at a time (each write wakes the other process), or with anything else written, or at once
  when the sender may be short of them (all but one of its pool's slots are lent or waiting to go back).
- When every lendable slot is lent, the parent lets its loop run once before it copies an item out (arrays
  handed to a callback subscription die on the next turn, and their slots come back); the worker's
  ``send_soon()`` holds a small message back until its next write or ``flush()``.
- A sender with no free slot waits for one (``block=True``, back-pressure: nothing is lost) or drops the item
  (``WorkerEndpoint.send(obj, block=False)``, counted in ``dropped``: a camera keeps only fresh frames).
- Items arrive in the order they were sent; ``on_eof`` runs after the last item was delivered.

Shared memory is an anonymous ``memfd`` (or, without ``memfd_create``, a ``/dev/shm`` file unlinked the moment
it is created), owner-only, passed to the other process with ``SCM_RIGHTS``: nothing has a name, and nothing
is left behind when either process is killed. A pool is created by the sending side when the first large item
is sent, with slots sized for it; a larger item later makes a new pool, and the old one is unmapped on both
sides once all its slots are back. A receiver that closes while arrays lent from a pool live keeps that
mapping (and its fd) until the last of them dies; nothing else outlives ``close()``.

Wire format (little endian): each message is ``length:u32 kind:u8`` then ``length`` bytes of payload:

========  =================================================================================================
ITEM      ``pool:u32 slot:i32 count:u16`` + ``count`` x ``offset:u64 size:u64`` + pickle (slot -1: no buffers)
RELEASE   ``pool:u32 slot:u32``: the receiver is done with the slot (copied out, or its lent arrays died);
          the sender may reuse it
POOL      ``pool:u32 slot_size:u64 slots:u32``; the pool's fd rides on the message's first byte
DROP      ``pool:u32``: every slot of a replaced pool is back, the receiver unmaps it
========  =================================================================================================
"""
from .parent_end import ParentEndpoint
from .sockets import ChannelClosed, register_parent_end, socket_pair
from .worker_end import WorkerEndpoint

__all__ = ["ChannelClosed", "socket_pair", "register_parent_end", "WorkerEndpoint", "ParentEndpoint"]
