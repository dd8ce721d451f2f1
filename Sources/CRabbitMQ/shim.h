// The one C header Sluice includes. Works with rabbitmq-c 0.11's flat headers
// (<amqp.h>) and with the <rabbitmq-c/amqp.h> layout of 0.12 and later.
#ifndef SLUICE_CRABBITMQ_SHIM_H
#define SLUICE_CRABBITMQ_SHIM_H

#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/framing.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#endif

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <unistd.h>

// amqp_login_with_properties is variadic (the SASL arguments), which Swift
// cannot call. Sluice only uses PLAIN, so this fixes the variadic part.
static inline amqp_rpc_reply_t sluice_amqp_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max,
    int frame_max, int heartbeat, const amqp_table_t *client_properties,
    const char *user, const char *password) {
  return amqp_login_with_properties(state, vhost, channel_max, frame_max,
                                    heartbeat, client_properties,
                                    AMQP_SASL_METHOD_PLAIN, user, password);
}

// Names the calling thread (as ps and top show it; 15 bytes at most).
// prctl is variadic, which Swift cannot call.
static inline void sluice_name_this_thread(const char *name) {
  (void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

// The method payload of a frame, typed, so Swift need not cast void pointers
// for every method it reads.
static inline void *sluice_frame_method_decoded(const amqp_frame_t *frame) {
  return frame->payload.method.decoded;
}

// An eventfd used to wake a connection thread from poll().
static inline int sluice_eventfd(void) {
  return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}


// Swift does not import rabbitmq-c's macros that cast to typedefs, so the
// method ids and property flags Sluice reads are restated as constants here.
enum {
  SLUICE_BASIC_CONTENT_TYPE_FLAG = AMQP_BASIC_CONTENT_TYPE_FLAG,
  SLUICE_BASIC_CONTENT_ENCODING_FLAG = AMQP_BASIC_CONTENT_ENCODING_FLAG,
  SLUICE_BASIC_HEADERS_FLAG = AMQP_BASIC_HEADERS_FLAG,
  SLUICE_BASIC_DELIVERY_MODE_FLAG = AMQP_BASIC_DELIVERY_MODE_FLAG,
  SLUICE_BASIC_PRIORITY_FLAG = AMQP_BASIC_PRIORITY_FLAG,
  SLUICE_BASIC_CORRELATION_ID_FLAG = AMQP_BASIC_CORRELATION_ID_FLAG,
  SLUICE_BASIC_REPLY_TO_FLAG = AMQP_BASIC_REPLY_TO_FLAG,
  SLUICE_BASIC_EXPIRATION_FLAG = AMQP_BASIC_EXPIRATION_FLAG,
  SLUICE_BASIC_MESSAGE_ID_FLAG = AMQP_BASIC_MESSAGE_ID_FLAG,
  SLUICE_BASIC_TIMESTAMP_FLAG = AMQP_BASIC_TIMESTAMP_FLAG,
  SLUICE_BASIC_TYPE_FLAG = AMQP_BASIC_TYPE_FLAG,
  SLUICE_BASIC_USER_ID_FLAG = AMQP_BASIC_USER_ID_FLAG,
  SLUICE_BASIC_APP_ID_FLAG = AMQP_BASIC_APP_ID_FLAG,
};

static const uint32_t SLUICE_CONNECTION_CLOSE = AMQP_CONNECTION_CLOSE_METHOD;
static const uint32_t SLUICE_CONNECTION_CLOSE_OK = AMQP_CONNECTION_CLOSE_OK_METHOD;
static const uint32_t SLUICE_CONNECTION_BLOCKED = AMQP_CONNECTION_BLOCKED_METHOD;
static const uint32_t SLUICE_CONNECTION_UNBLOCKED = AMQP_CONNECTION_UNBLOCKED_METHOD;
static const uint32_t SLUICE_CHANNEL_CLOSE = AMQP_CHANNEL_CLOSE_METHOD;
static const uint32_t SLUICE_CHANNEL_CLOSE_OK = AMQP_CHANNEL_CLOSE_OK_METHOD;
static const uint32_t SLUICE_CHANNEL_FLOW = AMQP_CHANNEL_FLOW_METHOD;
static const uint32_t SLUICE_CHANNEL_FLOW_OK = AMQP_CHANNEL_FLOW_OK_METHOD;
static const uint32_t SLUICE_BASIC_DELIVER = AMQP_BASIC_DELIVER_METHOD;
static const uint32_t SLUICE_BASIC_RETURN = AMQP_BASIC_RETURN_METHOD;
static const uint32_t SLUICE_BASIC_ACK = AMQP_BASIC_ACK_METHOD;
static const uint32_t SLUICE_BASIC_NACK = AMQP_BASIC_NACK_METHOD;
static const uint32_t SLUICE_BASIC_CANCEL = AMQP_BASIC_CANCEL_METHOD;
static const uint32_t SLUICE_BASIC_CANCEL_OK = AMQP_BASIC_CANCEL_OK_METHOD;
static const uint32_t SLUICE_BASIC_GET_OK = AMQP_BASIC_GET_OK_METHOD;
static const uint32_t SLUICE_BASIC_GET_EMPTY = AMQP_BASIC_GET_EMPTY_METHOD;
static const uint8_t SLUICE_FRAME_METHOD = AMQP_FRAME_METHOD;
static const uint8_t SLUICE_FRAME_HEADER = AMQP_FRAME_HEADER;
static const uint8_t SLUICE_FRAME_BODY = AMQP_FRAME_BODY;
static const uint8_t SLUICE_FRAME_HEARTBEAT = AMQP_FRAME_HEARTBEAT;

// rabbitmq-c 0.11 checks the host name against DNS entries and the common
// name only, so a certificate that names its IP address never matches. For an
// IP literal, this hands the check to OpenSSL: the socket's own SSL context
// (one per socket, used when the socket opens) is told to expect the address,
// and peer verification then fails on a mismatch. Returns 1 if `host` is an
// IP address (and the check is set), 0 if it is a name.
static inline int sluice_ssl_expect_ip(amqp_socket_t *socket, const char *host) {
  SSL_CTX *context = (SSL_CTX *)amqp_ssl_socket_get_context(socket);
  if (context == NULL) return 0;
  return X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(context), host) == 1;
}

#endif
