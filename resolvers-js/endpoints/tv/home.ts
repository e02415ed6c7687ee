// The TV home screen, shaped for a 10-foot UI: rows of tiles, each with one image and a
// progress bar instead of raw bookmark seconds. TypeScript, checked against the types of the
// endpoint's answer (home.types.ts: `facade endpoints types --document
// resolvers-js/endpoints/tv/home.graphql`); its types are stripped when it is published.
import type { Ctx, Data } from "./home.types";

export default function transform(data: Data, ctx: Ctx) {
  const profile = data.profile;
  if (!profile) {
    return { error: "unknown profile", profileId: ctx.variables.profileId };
  }
  return {
    profile: profile.name,
    version: ctx.version,
    rows: (profile.rows ?? []).map((row) => ({
      title: row.name,
      tiles: (row.titles ?? []).map((t) => ({
        id: t.id,
        label: `${t.name} (${t.year})`,
        image: t.artwork ? t.artwork.url : null,
        stars: t.rating ? Math.round(t.rating.average * 2) / 2 : null,
        resumeAt: t.bookmark ? t.bookmark.positionSeconds : 0,
      })),
    })),
  };
}
