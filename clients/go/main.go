// Command vitrine-client calls Vitrine from Go: Search, then Recommend (more like a liked
// object), then SuggestTags for an object fetched from search, printed as one JSON document.
//
// The stubs are generated from protos/ by `buf generate` (buf.gen.yaml); build.sh generates
// them into a build folder and compiles this file against Debian's Go gRPC packages. Usage:
//
//	vitrine-client [-search HOST:PORT] [-tagger HOST:PORT] [-query TEXT] [-like ID]...
//	               [-object ID] [-page-size N] [-k N]
//
// Addresses default to $VITRINE_CLIENT_SEARCH / $VITRINE_CLIENT_TAGGER, then to `make run`'s
// ports. Without -like the first search hit is liked; without -object it is tagged.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	vitrinev1 "github.com/vitrine-museum/vitrine/gen/go/vitrine/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

const deadline = 30 * time.Second

type idList []string

func (l *idList) String() string     { return strings.Join(*l, ",") }
func (l *idList) Set(v string) error { *l = append(*l, v); return nil }

// The same document as clients/js/index.mjs prints, with the proto's field names.
type hit struct {
	ID    string  `json:"id"`
	Title string  `json:"title"`
	Score float32 `json:"score"`
}

type suggestion struct {
	Tag            string  `json:"tag"`
	Label          string  `json:"label"`
	Score          float32 `json:"score"`
	Kind           string  `json:"kind"`
	AlreadyPresent bool    `json:"already_present"`
}

type result struct {
	Search struct {
		Query   string   `json:"query"`
		Hits    []hit    `json:"hits"`
		Notices []string `json:"notices"`
	} `json:"search"`
	Recommend struct {
		LikedIDs []string `json:"liked_ids"`
		Hits     []hit    `json:"hits"`
	} `json:"recommend"`
	Suggest struct {
		ObjectID     string       `json:"object_id"`
		ModelVersion string       `json:"model_version"`
		Suggestions  []suggestion `json:"suggestions"`
	} `json:"suggest"`
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func hits(in []*vitrinev1.SearchHit) []hit {
	out := make([]hit, 0, len(in))
	for _, h := range in {
		out = append(out, hit{ID: h.GetObject().GetId(), Title: h.GetObject().GetTitle(), Score: h.GetScore()})
	}
	return out
}

// failed names the RPC and the gRPC status code as the protocol spells it (NOT_FOUND), like the
// JavaScript example, rather than Go's constant name (NotFound).
func failed(method string, err error) error {
	s := status.Convert(err)
	var name strings.Builder
	for i, r := range s.Code().String() {
		if i > 0 && unicode.IsUpper(r) {
			name.WriteByte('_')
		}
		name.WriteRune(unicode.ToUpper(r))
	}
	return fmt.Errorf("%s failed: %s: %s", method, name.String(), s.Message())
}

func call(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, deadline)
}

func run() error {
	searchAddr := flag.String("search", env("VITRINE_CLIENT_SEARCH", "127.0.0.1:50053"), "search service HOST:PORT")
	taggerAddr := flag.String("tagger", env("VITRINE_CLIENT_TAGGER", "127.0.0.1:50052"), "tagger service HOST:PORT")
	query := flag.String("query", "ship in a storm at sea", "free-text query")
	objectID := flag.String("object", "", "object to suggest tags for (default: the first hit)")
	pageSize := flag.Int("page-size", 5, "search hits to ask for")
	k := flag.Int("k", 5, "recommendations and suggestions to ask for")
	var liked idList
	flag.Var(&liked, "like", "liked object id (repeatable; default: the first hit)")
	flag.Parse()
	if *pageSize <= 0 || *k <= 0 {
		return errors.New("-page-size and -k take positive whole numbers")
	}

	ctx := context.Background()
	// Plaintext, as `make run` serves; a deployment behind TLS passes grpc.WithTransportCredentials.
	searchConn, err := grpc.Dial(*searchAddr, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("search at %s: %w", *searchAddr, err)
	}
	defer searchConn.Close()
	taggerConn, err := grpc.Dial(*taggerAddr, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("tagger at %s: %w", *taggerAddr, err)
	}
	defer taggerConn.Close()
	search := vitrinev1.NewSearchServiceClient(searchConn)
	tagger := vitrinev1.NewTaggerServiceClient(taggerConn)

	c, cancel := call(ctx)
	found, err := search.Search(c, &vitrinev1.SearchRequest{
		Query: *query,
		Page:  &vitrinev1.PageRequest{PageSize: int32(*pageSize)},
	})
	cancel()
	if err != nil {
		return failed("Search", err)
	}
	first := ""
	if len(found.GetHits()) > 0 {
		first = found.GetHits()[0].GetObject().GetId()
	}
	if len(liked) == 0 && first != "" {
		liked = idList{first}
	}
	if *objectID == "" {
		*objectID = first
	}
	if len(liked) == 0 || *objectID == "" {
		return fmt.Errorf("no hits for %q: pass -like ID and -object ID", *query)
	}

	c, cancel = call(ctx)
	recommended, err := search.Recommend(c, &vitrinev1.RecommendRequest{LikedIds: liked, K: int32(*k)})
	cancel()
	if err != nil {
		return failed("Recommend", err)
	}
	c, cancel = call(ctx)
	object, err := search.GetObject(c, &vitrinev1.GetObjectRequest{Id: *objectID})
	cancel()
	if err != nil {
		return failed("GetObject", err)
	}
	c, cancel = call(ctx)
	suggested, err := tagger.SuggestTags(c, &vitrinev1.SuggestTagsRequest{Object: object.GetObject(), K: int32(*k)})
	cancel()
	if err != nil {
		return failed("SuggestTags", err)
	}

	var out result
	out.Search.Query = *query
	out.Search.Hits = hits(found.GetHits())
	out.Search.Notices = append([]string{}, found.GetNotices()...)
	out.Recommend.LikedIDs = liked
	out.Recommend.Hits = hits(recommended.GetHits())
	out.Suggest.ObjectID = suggested.GetObjectId()
	out.Suggest.ModelVersion = suggested.GetModelVersion()
	out.Suggest.Suggestions = []suggestion{}
	for _, s := range suggested.GetSuggestions() {
		out.Suggest.Suggestions = append(out.Suggest.Suggestions, suggestion{
			Tag:            s.GetTag().GetId(),
			Label:          s.GetTag().GetLabel(),
			Score:          s.GetScore(),
			Kind:           s.GetKind().String(),
			AlreadyPresent: s.GetAlreadyPresent(),
		})
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	return encoder.Encode(out)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "vitrine-client: %v\n", err)
		os.Exit(1)
	}
}
