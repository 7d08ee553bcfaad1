"""The robot in a browser: its camera live in a web page, the arrow keys (or WASD) driving its motors.

    python examples/browser_robot.py --sim                      # simulated camera and Arduino
    python examples/browser_robot.py --port /dev/rtcbot/arduino --camera 0

Then open http://<robot>:8080/ (the address is printed). The page and the Python side talk over one
WebRTC connection: video one way, drive commands the other (the Arduino sketch in examples/arduino takes
them). Closing the page stops the motors. For every camera, sound and a gamepad, see `rtcbot serve`.
"""

import argparse
import asyncio
import contextlib
import sys

from aiohttp import web

from rtcbot import CVCamera, RtcbotError, SerialConnection, SimCamera
from rtcbot.cli.options import int_in_range, non_negative_int, positive_float
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino
from rtcbot.web import RTCConnection, getRTCBotJS

PAGE = """<!doctype html>
<html><body style="background:#111;color:#eee;font-family:sans-serif">
<video autoplay muted playsinline style="width:640px"></video>
<p>Arrow keys or WASD to drive. Motors: <span id="motors">0 0</span></p>
<script type="module">
import { RTCConnection, Keyboard, connect } from "/rtcbot.js";
const SPEED = 150;
const KEYS = { KeyW: [1, 0], ArrowUp: [1, 0], KeyS: [-1, 0], ArrowDown: [-1, 0],
               KeyA: [0, -1], ArrowLeft: [0, -1], KeyD: [0, 1], ArrowRight: [0, 1] };
const conn = new RTCConnection();
conn.video.subscribe(document.querySelector("video"));
conn.subscribe((msg) => (document.getElementById("motors").textContent = msg.left + " " + msg.right));
const keyboard = new Keyboard();
function speeds() {
  let forward = 0, turn = 0;
  for (const code of keyboard.held) if (KEYS[code]) { forward += KEYS[code][0]; turn += KEYS[code][1]; }
  return [(forward + turn) * SPEED, (forward - turn) * SPEED];
}
// Send on every key change, and every 100 ms while moving: the sketch stops after 0.5 s without a command.
keyboard.subscribe(() => conn.put_nowait({ drive: speeds() }));
setInterval(() => { const s = speeds(); if (s[0] || s[1]) conn.put_nowait({ drive: s }); }, 100);
window.robot = conn;
await connect(conn, "/connect");
</script></body></html>"""


async def main(args: argparse.Namespace) -> None:
    camera = SimCamera(width=640, height=480) if args.sim else CVCamera(width=640, height=480, cameranumber=args.camera)
    with camera, SimulatedArduino() if args.sim else contextlib.nullcontext() as sim:
        with SerialConnection(sim.port if sim else args.port, **SERIAL_OPTIONS) as motors:
            connections = set()

            def stop() -> None:
                motors.put_nowait({"left": 0, "right": 0})
                print("motors stopped", flush=True)

            async def page(request: web.Request) -> web.Response:
                return web.Response(content_type="text/html", text=PAGE)

            async def script(request: web.Request) -> web.Response:
                return web.Response(content_type="text/javascript", text=getRTCBotJS())

            async def connect(request: web.Request) -> web.Response:
                conn = RTCConnection()
                connections.add(conn)
                conn.video.putSubscription(camera)

                @conn.subscribe
                def drive(message):
                    left, right = message["drive"]
                    motors.put_nowait({"left": left, "right": right})
                    conn.put_nowait({"left": left, "right": right})
                    print(f"motor command: left={left} right={right}", flush=True)

                conn.onClose(stop)  # the page closed or the connection dropped
                return web.json_response(await conn.getLocalDescription(await request.json()))

            app = web.Application()
            app.add_routes([web.get("/", page), web.get("/rtcbot.js", script), web.post("/connect", connect)])
            runner = web.AppRunner(app, shutdown_timeout=1)
            await runner.setup()
            await web.TCPSite(runner, args.host, args.http_port).start()
            host = "localhost" if args.host == "0.0.0.0" else args.host
            print(f"open http://{host}:{runner.addresses[0][1]}/ in a browser", flush=True)
            try:
                await asyncio.sleep(args.seconds if args.seconds else float("inf"))
            finally:
                await asyncio.gather(*(conn.close() for conn in connections))
                await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", action="store_true", help="simulated camera and Arduino: no hardware needed")
    parser.add_argument("--port", default="/dev/rtcbot/arduino", help="the Arduino's serial port")
    parser.add_argument("--camera", type=non_negative_int, default=0, help="camera number (rtcbot devices lists them)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0: the whole network)")
    parser.add_argument(
        "--http-port", type=int_in_range(0, 65535), default=8080, help="web server port (0: any free one)"
    )
    parser.add_argument("--seconds", type=positive_float, help="stop after this many seconds (default: Ctrl+C)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
    except RtcbotError as e:  # e.g. no such camera or port: the message says what to check
        sys.exit(f"{parser.prog}: {e}")
