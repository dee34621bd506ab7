// Package notification is what the shop tells its customers: one [NotificationSent] event per
// order event a customer hears about, each in its own stream
// "notification-<order>-<about>" (category "notification"), so that the stream's existence
// says the customer was told.
package notification

import (
	"github.com/annalsdb/annals/codec"
)

// Stream returns the stream of the notification about an order's event of type about (an
// event type: "OrderPlaced", "OrderShipped", …).
func Stream(order, about string) string { return "notification-" + order + "-" + about }

// NotificationSent ("NotificationSent") records that the customer of Order was told Text about
// the order's event of type About.
type NotificationSent struct {
	Order string `json:"order"`
	About string `json:"about"`
	Text  string `json:"text"`
}

// TypeNotificationSent is the stored type name of [NotificationSent].
const TypeNotificationSent = "NotificationSent"

// Register adds the notification's event to r.
func Register(r *codec.Registry) error {
	return codec.Register[NotificationSent](r, TypeNotificationSent, nil)
}
