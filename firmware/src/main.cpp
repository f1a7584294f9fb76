// Board layer for ESP32 (Arduino): everything the portable core needs and nothing else.
// Signals: the chip's internal temperature sensor and one ADC pin (OM_ADC_PIN, default GPIO34).
#include <Arduino.h>

extern "C" {
#include "om_core.h"
}

#ifdef OM_MODEL_HEADER
#include OM_MODEL_HEADER
#endif

#ifndef OM_ADC_PIN
#define OM_ADC_PIN 34
#endif

static const om_signal_t SIGNALS[] = {
    {"temperature", "C", 50},   // temperatureRead() takes ~ms; 50 Hz is safe
    {"adc", "raw", 1000},       // analogRead(): 12-bit counts
};

static om_device_t dev;  // static: no heap, ~36 KB with two model buffers and a PREDICTB row

static void board_write(void *, const char *data, size_t len) { Serial.write((const uint8_t *)data, len); }

static float board_read(void *, int sig, uint64_t) {
    if (sig == 0) return temperatureRead();
    return (float)analogRead(OM_ADC_PIN);
}

static uint64_t board_micros(void *) { return (uint64_t)esp_timer_get_time(); }

void setup() {
    Serial.setRxBufferSize(1024);
    Serial.begin(115200);
    analogReadResolution(12);
    om_board_t board = {board_write, board_read, board_micros, nullptr, SIGNALS,
                        (int)(sizeof SIGNALS / sizeof SIGNALS[0]), "esp32"};
    om_init(&dev, &board);
#ifdef OM_MODEL_HEADER
    om_load_model(&dev, om_model_blob, sizeof om_model_blob);
#endif
}

void loop() {
    uint8_t buf[128];
    size_t n = 0;
    while (Serial.available() && n < sizeof buf) buf[n++] = (uint8_t)Serial.read();
    if (n) om_feed(&dev, buf, n);
    om_poll(&dev);
}
