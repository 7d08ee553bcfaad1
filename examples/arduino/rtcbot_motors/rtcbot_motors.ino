// rtcbot_motors: a two-motor controller that speaks rtcbot's framed serial protocol.
//
// Host -> board: motor command, payload "<hh" = left, right speed in -255..255 (clamped here).
// Board -> host: sensor reading, payload "<IhhHH" = millis, left, right (applied speeds), A0, A1,
//                every 50 ms and right after each command.
// Every message is a frame:  0xA5 0x5A | length (1 byte) | payload | CRC-16/CCITT-FALSE (2 bytes, little-endian)
// where the CRC covers the length byte and the payload. Bad frames are dropped; the parser resynchronises on
// the next 0xA5 0x5A. With no command for 500 ms the motors stop (a robot must not run away when the host dies).
//
// Wiring (an L298N-style driver; change the pins to yours): left motor PWM on D5, direction on D4;
// right motor PWM on D6, direction on D7. Use with rtcbot:
//
//   from rtcbot import SerialConnection
//   from rtcbot.devices.arduino_sim import SERIAL_OPTIONS
//   conn = SerialConnection("/dev/rtcbot/arduino", **SERIAL_OPTIONS)
//   conn.put_nowait({"left": 120, "right": 120})
//
// Works on any board with a hardware or USB serial port (Uno, Nano, Leonardo, Mega, Pico with arduino-pico).

#include <Arduino.h>

const uint8_t SYNC0 = 0xA5;
const uint8_t SYNC1 = 0x5A;
const uint8_t MAX_PAYLOAD = 32;            // commands are 4 bytes; anything longer is noise
const unsigned long READING_PERIOD_MS = 50;
const unsigned long WATCHDOG_MS = 500;

const uint8_t LEFT_PWM = 5, LEFT_DIR = 4, RIGHT_PWM = 6, RIGHT_DIR = 7;

int16_t leftSpeed = 0, rightSpeed = 0;
unsigned long lastCommandMs = 0, lastReadingMs = 0;

// --- CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection (Python: binascii.crc_hqx(data, 0xFFFF)) ---
uint16_t crc16Update(uint16_t crc, uint8_t byte) {
  crc ^= (uint16_t)byte << 8;
  for (uint8_t i = 0; i < 8; i++) {
    crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

// --- sending ---
void sendFrame(const uint8_t *payload, uint8_t len) {
  uint16_t crc = crc16Update(0xFFFF, len);
  for (uint8_t i = 0; i < len; i++) crc = crc16Update(crc, payload[i]);
  Serial.write(SYNC0);
  Serial.write(SYNC1);
  Serial.write(len);
  Serial.write(payload, len);
  Serial.write((uint8_t)(crc & 0xFF));  // little-endian
  Serial.write((uint8_t)(crc >> 8));
}

void putU16(uint8_t *p, uint16_t v) { p[0] = v & 0xFF; p[1] = v >> 8; }
void putU32(uint8_t *p, uint32_t v) { for (uint8_t i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xFF; }

void sendReading() {
  uint8_t p[12];                                   // "<IhhHH": 4 + 2 + 2 + 2 + 2 bytes, little-endian
  putU32(p, millis());
  putU16(p + 4, (uint16_t)leftSpeed);
  putU16(p + 6, (uint16_t)rightSpeed);
  putU16(p + 8, analogRead(A0));
  putU16(p + 10, analogRead(A1));
  sendFrame(p, sizeof(p));
}

// --- motors ---
void driveMotor(uint8_t pwmPin, uint8_t dirPin, int16_t speed) {
  digitalWrite(dirPin, speed >= 0 ? HIGH : LOW);
  analogWrite(pwmPin, speed >= 0 ? speed : -speed);
}

int16_t clampSpeed(int16_t v) { return v > 255 ? 255 : (v < -255 ? -255 : v); }

void applyMotors(int16_t left, int16_t right) {
  leftSpeed = clampSpeed(left);
  rightSpeed = clampSpeed(right);
  driveMotor(LEFT_PWM, LEFT_DIR, leftSpeed);
  driveMotor(RIGHT_PWM, RIGHT_DIR, rightSpeed);
}

void onPayload(const uint8_t *p, uint8_t len) {
  if (len != 4) return;                            // not a motor command: ignore
  int16_t left = (int16_t)(p[0] | (p[1] << 8));
  int16_t right = (int16_t)(p[2] | (p[3] << 8));
  applyMotors(left, right);
  lastCommandMs = millis();
  sendReading();
}

// --- receiving: a byte-at-a-time state machine, so a bad byte costs at most one frame ---
enum RxState : uint8_t { WAIT_SYNC0, WAIT_SYNC1, WAIT_LEN, IN_PAYLOAD, WAIT_CRC0, WAIT_CRC1 };
RxState rxState = WAIT_SYNC0;
uint8_t rxLen = 0, rxPos = 0, rxCrcLow = 0;
uint8_t rxBuf[MAX_PAYLOAD];

void rxByte(uint8_t b) {
  switch (rxState) {
    case WAIT_SYNC0:
      if (b == SYNC0) rxState = WAIT_SYNC1;
      break;
    case WAIT_SYNC1:
      rxState = (b == SYNC1) ? WAIT_LEN : (b == SYNC0 ? WAIT_SYNC1 : WAIT_SYNC0);
      break;
    case WAIT_LEN:
      rxLen = b;
      rxPos = 0;
      rxState = (rxLen > MAX_PAYLOAD) ? WAIT_SYNC0 : (rxLen == 0 ? WAIT_CRC0 : IN_PAYLOAD);
      break;
    case IN_PAYLOAD:
      rxBuf[rxPos++] = b;
      if (rxPos == rxLen) rxState = WAIT_CRC0;
      break;
    case WAIT_CRC0:
      rxCrcLow = b;
      rxState = WAIT_CRC1;
      break;
    case WAIT_CRC1: {
      uint16_t crc = crc16Update(0xFFFF, rxLen);
      for (uint8_t i = 0; i < rxLen; i++) crc = crc16Update(crc, rxBuf[i]);
      if (crc == (uint16_t)(rxCrcLow | (b << 8))) onPayload(rxBuf, rxLen);
      rxState = WAIT_SYNC0;
      break;
    }
  }
}

void setup() {
  pinMode(LEFT_PWM, OUTPUT);
  pinMode(LEFT_DIR, OUTPUT);
  pinMode(RIGHT_PWM, OUTPUT);
  pinMode(RIGHT_DIR, OUTPUT);
  applyMotors(0, 0);
  Serial.begin(115200);
}

void loop() {
  while (Serial.available() > 0) rxByte((uint8_t)Serial.read());

  unsigned long now = millis();
  if ((leftSpeed != 0 || rightSpeed != 0) && now - lastCommandMs >= WATCHDOG_MS) applyMotors(0, 0);
  if (now - lastReadingMs >= READING_PERIOD_MS) {
    lastReadingMs = now;
    sendReading();
  }
}
