package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/consume/kafkafeed"
	"github.com/annalsdb/annals/examples/shop/consume/natsfeed"
	"github.com/annalsdb/annals/groups"
)

// The feeds a consuming service can take its events from (--bus).
const (
	busGroups = "groups" // the server's consumer group
	busKafka  = "kafka"  // a Kafka consumer group on the topics a relay of the server fills
	busNATS   = "nats"   // a durable JetStream consumer on the stream a relay of the server fills
)

// The names on the brokers. On Kafka a topic per category ("shop.cart", …), so that a
// service reads only the categories it takes; on NATS one JetStream stream whose subjects are
// "shop.<category>.<stream>", so that a service's consumer filters by category.
const (
	topicPrefix     = "shop."
	topicTemplate   = topicPrefix + "{category}"
	natsStream      = "SHOP"
	subjectPrefix   = "shop."
	subjectTemplate = subjectPrefix + "{category}.{stream}"
)

// kafkaTopics returns the topics of the categories.
func kafkaTopics(categories []string) []string {
	var out []string
	for _, c := range categories {
		out = append(out, topicPrefix+c)
	}
	return out
}

// natsSubjects returns the subjects of the categories.
func natsSubjects(categories []string) []string {
	var out []string
	for _, c := range categories {
		out = append(out, subjectPrefix+c+".>")
	}
	return out
}

// busFlags are the flags that choose a consuming service's feed.
type busFlags struct {
	bus   *string
	kafka *string
	nats  *string
}

func addBusFlags(fs *flag.FlagSet) busFlags {
	return busFlags{
		bus:   fs.String("bus", busGroups, "where the events come from: groups (the server's consumer group), kafka or nats (the feed a relay of the server publishes)"),
		kafka: fs.String("kafka", "", "with --bus kafka: the Kafka brokers, host:port,…"),
		nats:  fs.String("nats", "", "with --bus nats: the NATS server's URL"),
	}
}

// feed returns the feed the flags name, for a service whose events filter selects (its
// categories name the topics or subjects it reads).
func (f busFlags) feed(gs groups.Service, filter *annals.Filter) (consume.Feed, error) {
	var categories []string
	if filter != nil {
		categories = filter.Categories
	}
	switch *f.bus {
	case busGroups:
		if *f.kafka != "" || *f.nats != "" {
			return nil, fmt.Errorf("--kafka and --nats go with --bus kafka and --bus nats, not --bus %s", *f.bus)
		}
		return consume.Groups{Service: gs}, nil
	case busKafka:
		if *f.kafka == "" || *f.nats != "" || len(categories) == 0 {
			return nil, fmt.Errorf("--bus kafka: want --kafka BROKERS (and no --nats)")
		}
		return &kafkafeed.Feed{Brokers: strings.Split(*f.kafka, ","), Topics: kafkaTopics(categories)}, nil
	case busNATS:
		if *f.nats == "" || *f.kafka != "" || len(categories) == 0 {
			return nil, fmt.Errorf("--bus nats: want --nats URL (and no --kafka)")
		}
		return &natsfeed.Feed{URL: *f.nats, Stream: natsStream, Subjects: natsSubjects(categories)}, nil
	}
	return nil, fmt.Errorf("--bus %q: want %s, %s or %s", *f.bus, busGroups, busKafka, busNATS)
}
